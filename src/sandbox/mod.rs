//! The practice stack: emulated Grafana and Kubernetes API, emulated pods, and a real
//! Prometheus (or VictoriaMetrics) scraping them, all on loopback.

pub mod cluster;
pub mod demo;
pub mod faults;
pub mod grafana;
pub mod hygiene;
pub mod kube_api;
pub mod pods;
pub mod prom;
pub mod scale;
pub mod stack;
pub mod warm;
