//! The runtime rocketmq-rust's producer and consumer need: a runtime owner,
//! process telemetry (logging at `warn` unless RUST_LOG says otherwise) and
//! the client runtime built on both.

use std::sync::Arc;

use anyhow::anyhow;
use rocketmq_client_rust::ClientRuntime;
use rocketmq_client_rust::ClientRuntimeConfig;
use rocketmq_observability::TelemetryBootstrapConfig;
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::RuntimeConfig;
use rocketmq_runtime::RuntimeOwner;

/// Everything a producer or consumer runs on; dropped at the end of a run.
pub struct ClientEnv {
    owner: RuntimeOwner,
    telemetry: TelemetryRuntimeGuard,
    runtime: Arc<ClientRuntime>,
}

impl ClientEnv {
    /// Builds the runtime owner, telemetry and client runtime.
    pub fn new(scope: &str) -> anyhow::Result<Self> {
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: format!("e2e-{scope}"),
            ..Default::default()
        })
        .map_err(|violation| anyhow!("runtime configuration for {scope}: {violation:?}"))?
        .build()
        .map_err(|error| anyhow!("building the runtime for {scope}: {error}"))?;
        let mut telemetry_config = TelemetryBootstrapConfig::default();
        if std::env::var_os("RUST_LOG").is_none() {
            telemetry_config.logging.filter = "warn".to_string();
        }
        let telemetry = rocketmq_observability::install_global(&telemetry_config)
            .map_err(|error| anyhow!("installing telemetry for {scope}: {error}"))?;
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )
        .map_err(|error| anyhow!("creating the client runtime for {scope}: {error}"))?;
        Ok(Self {
            owner,
            telemetry,
            runtime,
        })
    }

    /// The client runtime producers and consumers are built on.
    pub fn runtime(&self) -> Arc<ClientRuntime> {
        Arc::clone(&self.runtime)
    }

    /// Stops the client runtime, the owner's tasks and its background
    /// threads, and telemetry; each is bounded by its own timeout. What they
    /// report is not the run's result, so it is not checked.
    pub async fn shutdown(self) {
        let _ = self.runtime.shutdown().await;
        let _ = self.owner.shutdown_tasks().await;
        let _ = self.owner.shutdown_background();
        let _ = self.telemetry.shutdown();
    }
}
