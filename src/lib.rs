//! Atrium: a Kubernetes operator and a pingora API gateway that turn a cluster into a
//! microservice platform.
//!
//! The crate is one library under one binary (`atrium`). [`api`] holds the custom resources,
//! [`controller`] the operator role, [`gateway`] the gateway role, and [`cli`] the command line
//! that ties them together. See `DESIGN.md`-style notes in each module's docs.

pub mod admin;
pub mod api;
pub mod backoff;
pub mod cli;
pub mod compose;
pub mod controller;
pub mod demo;
pub mod echo;
pub mod forward;
pub mod gateway;
pub mod graph;
pub mod otel;
pub mod podrunner;
pub mod rbac;
pub mod registry;
pub mod route;
pub mod scope;
pub mod status;
pub mod telemetry;
pub mod token;
pub mod version;
pub mod watch;
