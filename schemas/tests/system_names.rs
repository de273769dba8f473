//! Reserved RocketMQ system topics and groups are refused unless the caller
//! allows them explicitly.

use schemas::{
    is_system_group, is_system_topic, validate_group_name, validate_topic_name,
    SubscriptionGroupConfig, TopicConfig, ValidateOptions, ValidationError, SYSTEM_GROUPS,
    SYSTEM_TOPICS,
};

const USER: ValidateOptions = ValidateOptions {
    allow_system: false,
};
const SYSTEM: ValidateOptions = ValidateOptions::ALLOW_SYSTEM;

const ROCKETMQ_SYSTEM_TOPICS: [&str; 13] = [
    "TBW102",
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "OFFSET_MOVED_EVENT",
    "SELF_TEST_TOPIC",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "CHECKPOINT_TOPIC",
    "rmq_sys_REVIVE_LOG_DefaultCluster",
    "rmq_sys_wheel_timer",
    "RMQ_SYS_ANYTHING",
];

const ROCKETMQ_SYSTEM_GROUPS: [&str; 16] = [
    "DEFAULT_CONSUMER",
    "DEFAULT_PRODUCER",
    "TOOLS_CONSUMER",
    "SCHEDULE_CONSUMER",
    "FILTERSRV_CONSUMER",
    "__MONITOR_CONSUMER",
    "CLIENT_INNER_PRODUCER",
    "SELF_TEST_P_GROUP",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_ONSAPI_PULL",
    "CID_RMQ_SYS_TRANS",
    "CID_RMQ_SYS_anything",
    "CID_RMQ_SYS_",
];

#[test]
fn system_topics_are_refused_without_the_flag_and_accepted_with_it() {
    for name in ROCKETMQ_SYSTEM_TOPICS
        .iter()
        .chain(["%SYS%internal"].iter())
    {
        assert!(is_system_topic(name), "{name}");
        let config = TopicConfig::new(*name);
        let error = config.validate(USER).unwrap_err();
        assert_eq!(
            error,
            ValidationError::SystemName {
                field: "topicName".into(),
                name: name.to_string(),
                kind: "topic"
            }
        );
        config.validate(SYSTEM).unwrap();
    }
}

#[test]
fn system_groups_are_refused_without_the_flag_and_accepted_with_it() {
    for name in ROCKETMQ_SYSTEM_GROUPS {
        assert!(is_system_group(name), "{name}");
        let config = SubscriptionGroupConfig::new(name);
        assert_eq!(config.validate(USER).unwrap_err().field(), "groupName");
        config.validate(SYSTEM).unwrap();
    }
}

#[test]
fn every_listed_name_is_covered_by_the_tests() {
    for name in SYSTEM_TOPICS {
        assert!(ROCKETMQ_SYSTEM_TOPICS.contains(name), "{name}");
    }
    for name in SYSTEM_GROUPS {
        assert!(ROCKETMQ_SYSTEM_GROUPS.contains(name), "{name}");
    }
}

#[test]
fn ordinary_names_that_resemble_system_names_are_user_names() {
    for topic in [
        "orders",
        "tbw102",
        "RMQ_SYSX",
        "my_rmq_sys_topic",
        "%RETRY%billing",
        "%DLQ%billing",
    ] {
        assert!(!is_system_topic(topic), "{topic}");
        validate_topic_name(topic, USER).unwrap();
    }
    for group in [
        "billing",
        "tools_consumer",
        "CID_RMQ_SYSX",
        "MY_CID_RMQ_SYS_X",
    ] {
        assert!(!is_system_group(group), "{group}");
        validate_group_name(group, USER).unwrap();
    }
}

#[test]
fn allowing_system_names_does_not_relax_the_syntax() {
    let error = validate_topic_name("RMQ_SYS_with.dot", SYSTEM).unwrap_err();
    assert!(matches!(error, ValidationError::IllegalCharacter { .. }));
}

#[test]
fn refusal_says_how_to_get_past_it() {
    let error = validate_group_name("TOOLS_CONSUMER", USER).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"groupName "TOOLS_CONSUMER" is a reserved system group; it is accepted only when system names are allowed explicitly"#
    );
}
