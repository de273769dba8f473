//! One topic as RocketMQ's `TopicConfig.encode()` writes it in a
//! compressed registration: `name readQueueNums writeQueueNums perm
//! topicFilterType attributesJSON`, separated by single spaces.
//! `topicSysFlag`, `order` and unknown fields do not travel.

use std::collections::BTreeMap;

use crate::{TopicConfig, TopicFilterType};

/// How much of an offending text an error quotes.
const QUOTED_TEXT_CHARS: usize = 64;

/// A topic as RocketMQ's `TopicConfig.encode()` writes it.
pub(crate) fn encode(topic: &TopicConfig) -> String {
    let attributes =
        serde_json::to_string(&topic.attributes).expect("a string map always serializes");
    format!(
        "{} {} {} {} {} {}",
        topic.topic_name,
        topic.read_queue_nums,
        topic.write_queue_nums,
        topic.perm,
        filter_type_name(topic.topic_filter_type),
        attributes
    )
}

fn filter_type_name(filter_type: TopicFilterType) -> &'static str {
    match filter_type {
        TopicFilterType::SingleTag => "SINGLE_TAG",
        TopicFilterType::MultiTag => "MULTI_TAG",
    }
}

/// A topic from RocketMQ's `TopicConfig.encode()` text, or what is wrong
/// with it. Everything after the fifth space is the attributes JSON, so
/// attribute values may hold spaces (Java's reader drops such attributes).
pub(crate) fn decode(text: &str) -> Result<TopicConfig, String> {
    let fields: Vec<&str> = text.splitn(6, ' ').collect();
    if fields.len() < 5 {
        return Err(format!(
            "has {} space-separated fields, not the 5 or 6 of name, readQueueNums, writeQueueNums, perm, topicFilterType, attributes: {}",
            fields.len(),
            quote(text)
        ));
    }
    if fields[0].is_empty() {
        return Err(format!("has no topic name: {}", quote(text)));
    }
    let number = |name: &str, value: &str| {
        value
            .parse::<i32>()
            .map_err(|_| format!("has {name} {}, not an integer", quote(value)))
    };
    let topic_filter_type = match fields[4] {
        "SINGLE_TAG" => TopicFilterType::SingleTag,
        "MULTI_TAG" => TopicFilterType::MultiTag,
        other => {
            return Err(format!(
                "has topicFilterType {}, not SINGLE_TAG or MULTI_TAG",
                quote(other)
            ))
        }
    };
    let attributes = match fields.get(5) {
        None | Some(&"") => BTreeMap::new(),
        Some(json) => serde_json::from_str(json).map_err(|error| {
            format!(
                "has attributes {} that are not a JSON object of strings: {error}",
                quote(json)
            )
        })?,
    };
    Ok(TopicConfig {
        read_queue_nums: number("readQueueNums", fields[1])?,
        write_queue_nums: number("writeQueueNums", fields[2])?,
        perm: number("perm", fields[3])?,
        topic_filter_type,
        attributes,
        ..TopicConfig::new(fields[0])
    })
}

fn quote(text: &str) -> String {
    let start: String = text.chars().take(QUOTED_TEXT_CHARS).collect();
    let ellipsis = if start.len() < text.len() { "…" } else { "" };
    format!("{start:?}{ellipsis}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicConfig {
        TopicConfig {
            read_queue_nums: 8,
            write_queue_nums: 4,
            perm: 6,
            attributes: BTreeMap::from([("+message.type".to_string(), "FIFO".to_string())]),
            ..TopicConfig::new(name)
        }
    }

    #[test]
    fn a_topic_is_written_as_rocketmqs_space_separated_text() {
        assert_eq!(
            encode(&topic("orders")),
            r#"orders 8 4 6 SINGLE_TAG {"+message.type":"FIFO"}"#
        );
    }

    #[test]
    fn topic_text_without_attributes_or_with_spaces_in_them_reads() {
        let bare = decode("TBW102 8 8 7 SINGLE_TAG ").unwrap();
        assert_eq!((bare.read_queue_nums, bare.perm), (8, 7));
        assert!(bare.attributes.is_empty());
        let spaced = decode(r#"t 1 1 6 MULTI_TAG {"k":"a b"}"#).unwrap();
        assert_eq!(spaced.attributes["k"], "a b");
        assert_eq!(spaced.topic_filter_type, TopicFilterType::MultiTag);
    }

    #[test]
    fn bad_topic_text_says_which_field() {
        let error = decode("t 1 x 6 SINGLE_TAG {}").unwrap_err();
        assert!(error.contains("writeQueueNums"), "{error}");
        let error = decode("t 1 1 6 ONE_TAG {}").unwrap_err();
        assert!(error.contains("topicFilterType"), "{error}");
        assert!(decode("t 1 1").is_err());
    }
}
