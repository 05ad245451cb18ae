//! JWT parsing up to the signature check: shape, header (`crit`, `kid`, `alg`), payload and
//! claims checks, and the key-set loader, on arbitrary input.
#![no_main]

use atrium::gateway::policy::jwt::{keys, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks what the rest is: a token, or key material.
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let _ = keys::parse(rest);
        return;
    }
    let Ok(token) = std::str::from_utf8(rest) else {
        return;
    };
    if verify::check_shape(token).is_err() {
        return;
    }
    if let Ok(header) = verify::decode_header(token) {
        let open = verify::Issuer {
            issuer: None,
            audiences: vec![],
            algorithms: vec![],
        };
        let _ = verify::check_signature(token, &header, &[], &open);
    }
    if let Ok(claims) = verify::claims_of(token) {
        let checks = verify::Checks {
            clock_skew: 60,
            require_exp: true,
        };
        let issuer = verify::Issuer {
            issuer: Some("https://issuer".into()),
            audiences: vec!["api".into()],
            algorithms: vec![],
        };
        let verdict = verify::check_claims(&claims, &issuer, &checks, 1_700_000_000);
        let until = verify::valid_until(&claims, 60);
        // The cache bound and the verifier agree: an accepted token is valid now.
        if verdict.is_ok() {
            assert!(until.is_ok_and(|u| u.is_none_or(|u| u >= 1_700_000_000)));
        }
    }
});
