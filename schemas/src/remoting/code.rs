//! Request and response codes, as RocketMQ numbers them
//! (`RequestCode`, `ResponseCode`, `RemotingSysResponseCode`); every value
//! is checked against Apache RocketMQ's. The request codes are all those
//! Apache's name server answers (its `DefaultRequestProcessor` and
//! `ClientRequestProcessor`).

/// The requests a name server answers.
pub mod request_code {
    /// Stores a key-value config entry (`namespace`, `key`, `value`).
    pub const PUT_KV_CONFIG: i32 = 100;
    /// Reads a key-value config entry.
    pub const GET_KV_CONFIG: i32 = 101;
    /// Deletes a key-value config entry.
    pub const DELETE_KV_CONFIG: i32 = 102;
    /// A broker registers (or re-registers) itself and its topics.
    pub const REGISTER_BROKER: i32 = 103;
    /// A broker leaves.
    pub const UNREGISTER_BROKER: i32 = 104;
    /// A client asks for a topic's route.
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    /// The brokers and clusters the name server knows.
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    /// Takes the write permission from every queue of a broker.
    pub const WIPE_WRITE_PERM_OF_BROKER: i32 = 205;
    /// Every topic the name server knows.
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    /// Removes a topic's routes.
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    /// Adds a topic's routes.
    pub const REGISTER_TOPIC_IN_NAMESRV: i32 = 217;
    /// Every key-value config entry of a namespace.
    pub const GET_KVLIST_BY_NAMESPACE: i32 = 219;
    /// The topics of one cluster.
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    /// The system topics: clusters' and brokers' own names.
    pub const GET_SYSTEM_TOPIC_LIST_FROM_NS: i32 = 304;
    /// Topics flagged as unit topics.
    pub const GET_UNIT_TOPIC_LIST: i32 = 311;
    /// Topics flagged as having unit subscriptions.
    pub const GET_HAS_UNIT_SUB_TOPIC_LIST: i32 = 312;
    /// Topics with unit subscriptions that are not unit topics.
    pub const GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST: i32 = 313;
    /// Changes the name server's own configuration.
    pub const UPDATE_NAMESRV_CONFIG: i32 = 318;
    /// The name server's own configuration.
    pub const GET_NAMESRV_CONFIG: i32 = 319;
    /// Whether a broker's data version differs from the stored one.
    pub const QUERY_DATA_VERSION: i32 = 322;
    /// Gives the write permission back to every queue of a broker.
    pub const ADD_WRITE_PERM_OF_BROKER: i32 = 327;
    /// The addresses of one broker group.
    pub const GET_BROKER_MEMBER_GROUP: i32 = 901;
    /// A broker says it is alive.
    pub const BROKER_HEARTBEAT: i32 = 904;
}

/// The codes of answers.
pub mod response_code {
    /// The request was served.
    pub const SUCCESS: i32 = 0;
    /// The request failed; the remark says why.
    pub const SYSTEM_ERROR: i32 = 1;
    /// The server cannot serve now; try another.
    pub const SYSTEM_BUSY: i32 = 2;
    /// The request code is not one this server knows.
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    /// The change is not allowed: Apache's name server answers this to an
    /// UPDATE_NAMESRV_CONFIG that names a key on its black list.
    pub const NO_PERMISSION: i32 = 16;
    /// No route for the topic.
    pub const TOPIC_NOT_EXIST: i32 = 17;
    /// The thing asked for is not there (a KV config entry).
    pub const QUERY_NOT_FOUND: i32 = 22;
    /// A request's header fields are missing or malformed (RocketMQ's
    /// `INVALID_PARAMETER`).
    ///
    /// rocketmq-rust's name server answers a request without its required
    /// header fields with this code and the remark "Request header is
    /// invalid". Apache's answers the same request with [`SYSTEM_ERROR`]
    /// and the remark of the exception its header decoding throws
    /// (`the custom field <topic> is null`), from its generic handler of
    /// failed requests.
    pub const INVALID_PARAMETER: i32 = 29;
}
