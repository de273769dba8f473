//! The command line: every subcommand and flag, parsed by clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kvctl: the command-line tool of openmessaging-kv.
///
/// Exit codes: 0 success, 1 error (the server refused, a key is missing,
/// the cluster is unreachable, an import entry was rejected), 2 usage.
#[derive(Debug, Parser)]
#[command(name = "kvctl", version)]
pub struct Cli {
    /// Node URLs, comma separated; the client fails over between them.
    #[arg(
        long,
        global = true,
        env = "KVCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7070"
    )]
    pub endpoints: Vec<String>,

    /// PEM CA certificates to trust for https:// endpoints (the only ones
    /// trusted).
    #[arg(long, global = true, env = "KVCTL_CACERT", value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,

    /// PEM client certificate, for servers that require one (with --key).
    #[arg(
        long = "cert",
        id = "client_cert",
        global = true,
        env = "KVCTL_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,

    /// PEM private key of --cert.
    #[arg(
        long = "key",
        id = "client_key",
        global = true,
        env = "KVCTL_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,

    /// Output format: human-readable tables, or JSON for scripts.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Longest time one call may take, retries and failover included
    /// (like 30s, 500ms, 2m).
    #[arg(long, global = true, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,

    /// The token to present (`Authorization: Bearer`) to a cluster run
    /// with --auth.
    #[arg(long, global = true, env = "KVCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Log what the client does (attempts, failover) to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables and short sentences.
    Table,
    /// JSON (one document, or one line per event for `watch`).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a key.
    Get {
        /// The key.
        key: String,
        /// Read the answering node's view without confirming with a quorum.
        #[arg(long)]
        stale: bool,
    },
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value: JSON (`'{"a":1}'`, `42`, `'"text"'`), or `-` to read it from stdin.
        value: String,
        /// Store VALUE as a JSON string instead of parsing it as JSON.
        #[arg(long)]
        string: bool,
        /// Write only if the key does not exist.
        #[arg(long, conflicts_with = "if_revision")]
        create: bool,
        /// Write only if the key's mod_revision is REV.
        #[arg(long, value_name = "REV")]
        if_revision: Option<u64>,
        /// Attach the key to lease ID: it is deleted when the lease ends.
        /// Without it, the key is detached from any lease.
        #[arg(long, value_name = "ID")]
        lease: Option<u64>,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
        /// Delete only if the key's mod_revision is REV.
        #[arg(long, value_name = "REV")]
        if_revision: Option<u64>,
    },
    /// List the keys under a prefix.
    Ls {
        /// The prefix (default: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Print only the keys.
        #[arg(long)]
        keys_only: bool,
        /// Stop after this many keys (1 or more).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Print the changes of a key or a prefix as they happen.
    Watch {
        /// The key, or the prefix with --prefix.
        key: String,
        /// Watch every key under KEY.
        #[arg(long)]
        prefix: bool,
        /// Start after this revision (default: now).
        #[arg(long, value_name = "REV")]
        after: Option<u64>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Exit after this long (like 30s, 5m).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Compare-and-set: write KEY only if its mod_revision is REV (0: only if absent).
    Cas {
        /// The key.
        key: String,
        /// The expected mod_revision; 0 means the key must not exist.
        revision: u64,
        /// The value, as for `put`.
        value: String,
        /// Store VALUE as a JSON string instead of parsing it as JSON.
        #[arg(long)]
        string: bool,
    },
    /// Run a transaction: compares, then the success or the failure ops,
    /// applied as one write. Reads the request JSON
    /// (`{"compare": […], "success": […], "failure": […]}`) from FILE, or
    /// from stdin when FILE is `-` or left out.
    Txn {
        /// The file holding the transaction; `-` reads stdin.
        #[arg(default_value = "-", value_name = "FILE")]
        file: String,
    },
    /// RocketMQ topic configs.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// RocketMQ subscription groups (consumer groups).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Stream the compacted topic as NDJSON.
    Replay {
        /// First offset (0: every live key's latest record).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Write the records to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Import a broker's topics.json and subscriptionGroup.json.
    #[command(name = "import-rocketmq")]
    ImportRocketmq {
        /// The broker's topics.json.
        topics: PathBuf,
        /// The broker's subscriptionGroup.json.
        subscription_groups: PathBuf,
    },
    /// Write topics.json and subscriptionGroup.json for a broker into DIR.
    #[command(name = "export-rocketmq")]
    ExportRocketmq {
        /// The directory (created if missing; files in it are replaced).
        dir: PathBuf,
    },
    /// Leases: keys attached to one are deleted when it ends.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// The cluster's members and state.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The NOSPACE alarm: list it, or disarm it once there is room.
    #[command(subcommand)]
    Alarm(AlarmCommand),
    /// Backups: `kv-server restore` lays a new cluster down from one.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Print the shell completion script for SHELL (e.g. `source <(kvctl
    /// completion bash)`).
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, for `make man`.
    #[command(hide = true)]
    Man,
    /// Roles and tokens of a cluster run with --auth.
    #[command(subcommand)]
    Acl(crate::acl::AclCommand),
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic (or change it with --update).
    Create {
        /// The topic's name (optional with --from-file).
        #[arg(required_unless_present = "from_file")]
        name: Option<String>,
        #[command(flatten)]
        fields: TopicFields,
        #[command(flatten)]
        common: CreateFlags,
    },
    /// Show a topic's config.
    Get {
        /// The topic's name.
        name: String,
    },
    /// List every topic.
    List,
    /// Delete a topic.
    Delete {
        /// The topic's name.
        name: String,
        /// Allow RocketMQ's reserved system names (TBW102, …): brokers
        /// need them, so deleting one must be meant.
        #[arg(long)]
        system: bool,
    },
}

/// The common fields of a topic.
#[derive(Debug, Args)]
pub struct TopicFields {
    /// Number of read queues.
    #[arg(long, value_name = "N")]
    pub read_queues: Option<i32>,
    /// Number of write queues.
    #[arg(long, value_name = "N")]
    pub write_queues: Option<i32>,
    /// Read and write queues at once.
    #[arg(long, value_name = "N", conflicts_with_all = ["read_queues", "write_queues"])]
    pub queues: Option<i32>,
    /// Permission bits: 6 read+write, 4 read only, 2 write only.
    #[arg(long, value_name = "BITS")]
    pub perm: Option<i32>,
    /// Messages are consumed in queue order.
    #[arg(long)]
    pub order: bool,
    /// The message.type attribute: NORMAL, FIFO, DELAY or TRANSACTION.
    #[arg(long, value_name = "TYPE")]
    pub message_type: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group (or change it with --update).
    Create {
        /// The group's name (optional with --from-file).
        #[arg(required_unless_present = "from_file")]
        name: Option<String>,
        #[command(flatten)]
        fields: GroupFields,
        #[command(flatten)]
        common: CreateFlags,
    },
    /// Show a group's config.
    Get {
        /// The group's name.
        name: String,
    },
    /// List every group.
    List,
    /// Delete a group.
    Delete {
        /// The group's name.
        name: String,
        /// Allow RocketMQ's reserved system names (TOOLS_CONSUMER, …).
        #[arg(long)]
        system: bool,
    },
}

/// The common fields of a group.
#[derive(Debug, Args)]
pub struct GroupFields {
    /// Deliveries after the first before a message goes to the dead-letter topic.
    #[arg(long, value_name = "N")]
    pub retry_max_times: Option<i32>,
    /// Number of queues of the group's retry topic.
    #[arg(long, value_name = "N")]
    pub retry_queues: Option<i32>,
    /// Minutes a push consumer may take for one message.
    #[arg(long, value_name = "MINUTES")]
    pub consume_timeout: Option<i32>,
    /// Consume each queue in order.
    #[arg(long)]
    pub orderly: bool,
    /// Create the group with consumption disabled.
    #[arg(long)]
    pub disabled: bool,
    /// Refuse broadcast consumption.
    #[arg(long)]
    pub no_broadcast: bool,
}

/// Flags shared by `topic create` and `group create`.
#[derive(Debug, Args)]
pub struct CreateFlags {
    /// Read the whole config from a JSON file in RocketMQ's shape; flags override its fields.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// An attribute, KEY=VALUE (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    pub attributes: Vec<(String, String)>,
    /// Allow RocketMQ's reserved system names (TBW102, TOOLS_CONSUMER, …).
    #[arg(long)]
    pub system: bool,
    /// Change the config if it exists: the flags apply to the stored config
    /// (with --from-file, the file replaces it). Default: fail if it exists.
    #[arg(long)]
    pub update: bool,
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Grant a lease that lives TTL seconds without a keep-alive (5 to 86400).
    Grant {
        /// The TTL in seconds (like 30, 30s, 5m).
        #[arg(value_parser = parse_whole_seconds)]
        ttl: u64,
    },
    /// Keep lease ID alive: renew it every third of its TTL until Ctrl-C
    /// or until it is lost, printing each renewal.
    Keepalive {
        /// The lease's id.
        id: u64,
        /// Send one keep-alive and exit.
        #[arg(long)]
        once: bool,
    },
    /// Revoke lease ID: it and every key attached to it are deleted.
    Revoke {
        /// The lease's id.
        id: u64,
    },
    /// Show lease ID: its TTL, the time it has left, and its keys.
    Get {
        /// The lease's id.
        id: u64,
    },
    /// List every lease with its TTL and the time it has left.
    List,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent snapshot of the store to FILE (admin).
    Save {
        /// Where to write it; replaced only once the whole backup is in.
        file: PathBuf,
        /// Save what the answering node has applied, without confirming
        /// with a quorum (a cluster that lost its quorum).
        #[arg(long)]
        stale: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// The alarms raised, by member.
    List,
    /// Disarm every alarm; refused while a member still crosses its limit.
    Disarm,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leader, term, indexes and members.
    Status,
    /// Add node ID, whose client API is at URL and peer port at PEER_URL.
    Add {
        /// The new node's id.
        id: u64,
        /// Its client API's URL (http://host:port).
        url: String,
        /// Its peer port's URL (http://host:port).
        peer_url: String,
    },
    /// Remove node ID from the cluster.
    Remove {
        /// The node's id.
        id: u64,
    },
}

/// Parses `30s`, `500ms`, `5m`, `1h`, `1.5s`, `1m30s` or a plain number of seconds, as the
/// API's `wait` is written.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    schemas::api::parse_duration(raw).map_err(|error| error.to_string())
}

/// A duration as [`parse_duration`] reads it, in whole seconds.
fn parse_whole_seconds(raw: &str) -> Result<u64, String> {
    let duration = parse_duration(raw)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!("{raw:?} is not a whole number of seconds"));
    }
    Ok(duration.as_secs())
}

fn parse_attribute(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{raw:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_whole_seconds("2m"), Ok(120));
        assert!(parse_whole_seconds("1500ms").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
