//! `conformance`: for every request code issue 16 lists, one or more requests
//! encoded with rocketmq-rust's published types, sent to one name server, and
//! the answers decoded with those types and checked (code, header fields,
//! body shape). Prints a table `code → ok / FAILED` and fails if any row did.
//!
//! The requests register a made-up broker (unique names per run, so a server
//! holding other state is not disturbed) and unregister it at the end.

mod brokers;
mod config;

use std::time::Duration;

use anyhow::anyhow;
use anyhow::bail;
use rocketmq_protocol::protocol::RemotingCommand;
use rocketmq_protocol::RequestCode;

use crate::wire::Connection;

/// One checked request: its code, what was checked, and the outcome.
struct Row {
    code: i32,
    name: &'static str,
    check: String,
    outcome: Result<String, String>,
}

/// The names a run registers, unique to the run.
pub struct Names {
    /// Cluster the made-up broker registers in.
    pub cluster: String,
    /// The made-up broker's name.
    pub broker: String,
    /// The master's address (never dialed by a name server).
    pub master_addr: String,
    /// The slave's address.
    pub slave_addr: String,
    /// A topic the broker registers with 4 queues.
    pub topic: String,
    /// A topic registered and deleted through REGISTER/DELETE_TOPIC_IN_NAMESRV.
    pub extra_topic: String,
    /// The KV-config namespace used.
    pub namespace: String,
}

/// The connections and the table being filled.
pub struct Checker {
    connection: Connection,
    /// A second connection, the slave's: a name server may tie a broker to
    /// the connection it registered on, as RocketMQ's does.
    second: Connection,
    /// Whether requests go through `second`.
    pub on_second: bool,
    rows: Vec<Row>,
    /// The run's names.
    pub names: Names,
}

impl Checker {
    /// Sends `request` (built for `code`, which issue 16 numbers `number`),
    /// checks the answer with `verify`, and records a row. Returns the answer
    /// when one came.
    pub async fn check(
        &mut self,
        code: RequestCode,
        number: i32,
        check: &str,
        request: RemotingCommand,
        verify: impl FnOnce(&RemotingCommand) -> anyhow::Result<String>,
    ) -> Option<RemotingCommand> {
        if code.to_i32() != number {
            let outcome = Err(format!(
                "rocketmq-rust numbers {code:?} {}, not {number}",
                code.to_i32()
            ));
            self.rows.push(Row {
                code: number,
                name: request_name(number),
                check: check.to_string(),
                outcome,
            });
            return None;
        }
        self.check_number(number, check, request, verify).await
    }

    /// As [`Checker::check`], for a request whose code is given by number only.
    pub async fn check_number(
        &mut self,
        number: i32,
        check: &str,
        request: RemotingCommand,
        verify: impl FnOnce(&RemotingCommand) -> anyhow::Result<String>,
    ) -> Option<RemotingCommand> {
        let connection = if self.on_second {
            &mut self.second
        } else {
            &mut self.connection
        };
        let (outcome, answer) = match connection.call(request).await {
            Ok(answer) => (
                verify(&answer).map_err(|error| format!("{error:#}")),
                Some(answer),
            ),
            Err(error) => (Err(format!("{error:#}")), None),
        };
        self.rows.push(Row {
            code: number,
            name: request_name(number),
            check: check.to_string(),
            outcome,
        });
        answer
    }

    /// Sends a request outside the table (setup, or a follow-up read).
    pub async fn call(&mut self, request: RemotingCommand) -> anyhow::Result<RemotingCommand> {
        self.connection.call(request).await
    }
}

/// Fails unless the answer has `expected` as its code.
pub fn expect_code(answer: &RemotingCommand, expected: i32) -> anyhow::Result<()> {
    if answer.code() != expected {
        let remark = answer
            .remark()
            .map(|remark| remark.to_string())
            .unwrap_or_default();
        bail!(
            "answer code {} (remark {remark:?}), expected {expected}",
            answer.code()
        );
    }
    Ok(())
}

/// The answer's body, which must be there.
pub fn body(answer: &RemotingCommand) -> anyhow::Result<&[u8]> {
    answer
        .body()
        .map(|body| body.as_ref())
        .ok_or_else(|| anyhow!("answer has no body"))
}

/// Runs every check against `namesrv` and prints the table.
pub async fn run(namesrv: &str, timeout: Duration) -> anyhow::Result<()> {
    let run_id = format!(
        "{}_{}",
        std::process::id(),
        std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let names = Names {
        cluster: format!("E2E_CLUSTER_{run_id}"),
        broker: format!("e2e-broker-{run_id}"),
        master_addr: "127.0.0.1:10".to_string(),
        slave_addr: "127.0.0.1:11".to_string(),
        topic: format!("E2E_TOPIC_{run_id}"),
        extra_topic: format!("E2E_EXTRA_{run_id}"),
        namespace: format!("e2e-ns-{run_id}"),
    };
    let connection = Connection::connect(namesrv, timeout).await?;
    let second = Connection::connect(namesrv, timeout).await?;
    let mut checker = Checker {
        connection,
        second,
        on_second: false,
        rows: Vec::new(),
        names,
    };
    config::kv_config(&mut checker).await;
    brokers::register(&mut checker).await;
    brokers::routes(&mut checker).await;
    brokers::write_permission(&mut checker).await;
    config::topic_lists(&mut checker).await;
    config::topic_changes(&mut checker).await;
    config::namesrv_config(&mut checker).await;
    brokers::unregister(&mut checker).await;
    config::unknown_code(&mut checker).await;

    println!("CONFORMANCE against {namesrv}");
    println!("{:<6} {:<38} {:<58} result", "code", "request", "check");
    let mut failed = 0;
    for row in &checker.rows {
        let result = match &row.outcome {
            Ok(detail) => format!("ok ({detail})"),
            Err(error) => {
                failed += 1;
                format!("FAILED: {error}")
            }
        };
        println!(
            "{:<6} {:<38} {:<58} {result}",
            row.code, row.name, row.check
        );
    }
    println!(
        "RESULT conformance namesrv={namesrv} rows={} failed={failed}",
        checker.rows.len()
    );
    if failed > 0 {
        bail!(
            "{failed} of {} conformance checks failed against {namesrv}",
            checker.rows.len()
        );
    }
    Ok(())
}

/// RocketMQ's name for a request code number.
fn request_name(number: i32) -> &'static str {
    match number {
        100 => "PUT_KV_CONFIG",
        101 => "GET_KV_CONFIG",
        102 => "DELETE_KV_CONFIG",
        103 => "REGISTER_BROKER",
        104 => "UNREGISTER_BROKER",
        105 => "GET_ROUTEINFO_BY_TOPIC",
        106 => "GET_BROKER_CLUSTER_INFO",
        205 => "WIPE_WRITE_PERM_OF_BROKER",
        206 => "GET_ALL_TOPIC_LIST_FROM_NAMESERVER",
        216 => "DELETE_TOPIC_IN_NAMESRV",
        217 => "REGISTER_TOPIC_IN_NAMESRV",
        219 => "GET_KVLIST_BY_NAMESPACE",
        224 => "GET_TOPICS_BY_CLUSTER",
        304 => "GET_SYSTEM_TOPIC_LIST_FROM_NS",
        311 => "GET_UNIT_TOPIC_LIST",
        312 => "GET_HAS_UNIT_SUB_TOPIC_LIST",
        313 => "GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST",
        318 => "UPDATE_NAMESRV_CONFIG",
        319 => "GET_NAMESRV_CONFIG",
        322 => "QUERY_DATA_VERSION",
        327 => "ADD_WRITE_PERM_OF_BROKER",
        901 => "GET_BROKER_MEMBER_GROUP",
        904 => "BROKER_HEARTBEAT",
        _ => "(not a name-server request)",
    }
}
