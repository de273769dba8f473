//! Header names of the API, lower-case as HTTP/2 sends them.

/// The store revision an answer reflects (every answer carries it).
pub const REVISION: &str = "x-kv-revision";

/// The index a long-poll client sends as `index` (or `from`) next.
pub const INDEX: &str = "x-kv-index";

/// A client-chosen UUID naming a write, so that its retries apply once.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// On a request between nodes (and their answers): the id of the cluster
/// the sending node belongs to.
pub const CLUSTER_ID: &str = "x-kv-cluster-id";

/// On a request between nodes: the data format the sending node writes
/// (see kv-server's `store::data_format`). Nodes of different formats would
/// assign different offsets to the same log, so they never talk.
pub const DATA_FORMAT: &str = "x-kv-data-format";

/// On a request one node passed to another: the id of the node that
/// passed it. Such a request is never passed on again.
pub const FORWARDED_BY: &str = "x-kv-forwarded-by";

/// On a request one node passed to another on the peer port: the request
/// is the passing node's own (its name server's), so it may hold a
/// transaction up to `MAX_INTERNAL_TXN_OPS`. Honoured on the peer port
/// only, and only from a node naming this cluster.
pub const INTERNAL: &str = "x-kv-internal";
