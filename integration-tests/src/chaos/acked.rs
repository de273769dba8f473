//! The check that no acknowledged write was lost, read off a history on
//! its own (it holds even when the linearizability search runs out of
//! time): a key's final read must show the last acknowledged write to it,
//! or a write that may have been ordered after that one.

use std::collections::{BTreeMap, BTreeSet};

use super::history::{Input, Operation, Output, Value};

/// One line per key whose final read (`final_reads`, key → value read)
/// shows a state no write could have left after the last acknowledged
/// write to it.
pub fn lost_writes(
    history: &[Operation],
    final_reads: &BTreeMap<String, Option<Value>>,
) -> Vec<String> {
    let mut lost = Vec::new();
    for (key, read) in final_reads {
        let writes: Vec<(&Operation, Option<Value>, bool)> = history
            .iter()
            .flat_map(|operation| {
                effects(operation, key).map(|(value, acked)| (operation, value, acked))
            })
            .collect();
        // The acknowledged write that returned last: every write called
        // after it returned is ordered after it.
        let Some((last, last_value, _)) = writes
            .iter()
            .filter(|(_, _, acked)| *acked)
            .max_by_key(|(operation, _, _)| operation.ret)
        else {
            continue;
        };
        // What may follow it: itself, and any write not over before it began.
        let allowed: BTreeSet<&Option<Value>> = writes
            .iter()
            .filter(|(operation, _, _)| operation.ret.is_none_or(|ret| ret > last.call))
            .map(|(_, value, _)| value)
            .chain([last_value])
            .collect();
        if !allowed.contains(read) {
            lost.push(format!(
                "key {key}: the last acknowledged write (client {}, called at {} ns, returned at {:?} ns) left {last_value:?}, but the final read saw {read:?}",
                last.client, last.call, last.ret
            ));
        }
    }
    lost
}

/// What `operation` may have written to `key` (`None`: deleted), and
/// whether it was acknowledged; nothing when it did not write `key`.
fn effects(operation: &Operation, key: &str) -> Option<(Option<Value>, bool)> {
    let acked = operation.output != Output::Unknown;
    match (&operation.input, &operation.output) {
        (Input::Put { key: k, value }, _) if k == key => Some((Some(value.clone()), acked)),
        (Input::Delete { key: k }, _) if k == key => Some((None, acked)),
        (Input::Cas { key: k, value, .. }, Output::Swapped(true) | Output::Unknown) if k == key => {
            Some((Some(value.clone()), acked))
        }
        (Input::WriteAll { pairs }, _) => pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| (Some(value.clone()), acked)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: usize, call: u64, ret: Option<u64>, value: &str) -> Operation {
        Operation {
            client,
            call,
            ret,
            input: Input::Put {
                key: "k".into(),
                value: value.into(),
            },
            output: if ret.is_some() {
                Output::Written
            } else {
                Output::Unknown
            },
        }
    }

    fn read(value: Option<&str>) -> BTreeMap<String, Option<Value>> {
        BTreeMap::from([("k".to_string(), value.map(str::to_string))])
    }

    #[test]
    fn a_final_read_older_than_the_last_acknowledged_write_is_a_lost_write() {
        let history = [put(0, 0, Some(10), "a"), put(1, 20, Some(30), "b")];
        assert!(lost_writes(&history, &read(Some("b"))).is_empty());
        assert_eq!(lost_writes(&history, &read(Some("a"))).len(), 1);
        assert_eq!(lost_writes(&history, &read(None)).len(), 1);
    }

    #[test]
    fn a_write_concurrent_with_the_last_acknowledged_one_or_unanswered_may_win() {
        let history = [
            put(0, 0, Some(30), "a"),
            put(1, 20, Some(25), "b"),
            put(2, 5, None, "c"),
        ];
        for value in ["a", "b", "c"] {
            assert!(
                lost_writes(&history, &read(Some(value))).is_empty(),
                "{value}"
            );
        }
    }
}
