//! The route compile step from arbitrary YAML: whatever documents parse as a GatewayRoute
//! compile into the model, through the gateway's compile step and into a table, without a
//! panic; a refusal is an error, never a crash.
#![no_main]

use atrium::api::GatewayRoute;
use atrium::gateway::compile;
use atrium::gateway::policy::Secrets;
use atrium::gateway::table::{Inputs, RouteTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = serde_saphyr::from_multiple::<serde_json::Value>(text) else {
        return;
    };
    let routes: Vec<_> = docs
        .into_iter()
        .filter_map(|d| serde_json::from_value::<GatewayRoute>(d).ok())
        .map(|r| atrium::route::gateway_route::compile(&r))
        .collect();
    for route in routes.iter().flatten() {
        let _ = compile::problems(route, &Secrets::new());
    }
    let _ = atrium::route::conflicts::find(routes.iter().flatten());
    let inputs = Inputs {
        routes,
        ..Inputs::default()
    };
    let _ = RouteTable::build(&inputs);
});
