//! The linearizability checker on histories whose verdict is known: the
//! anomalies it must catch, the concurrency it must allow, generated
//! histories linearizable by construction (and one read of each made
//! impossible), and a history of the chaos runner's size.

#[path = "linearizability/generated.rs"]
mod generated;

use std::time::Duration;

use integration_tests::chaos::history::{Input, Nanos, Operation, Output};
use integration_tests::chaos::linearizability::{check, Verdict};
use proptest::prelude::*;

/// Enough for every small history here; they take microseconds.
const LIMIT: Duration = Duration::from_secs(10);

fn op(client: usize, (call, ret): (Nanos, Nanos), input: Input, output: Output) -> Operation {
    Operation {
        client,
        call,
        ret: Some(ret),
        input,
        output,
    }
}

fn put(client: usize, window: (Nanos, Nanos), key: &str, value: &str) -> Operation {
    let input = Input::Put {
        key: key.into(),
        value: value.into(),
    };
    op(client, window, input, Output::Written)
}

fn get(client: usize, window: (Nanos, Nanos), key: &str, seen: Option<&str>) -> Operation {
    let output = Output::Got(seen.map(str::to_owned));
    op(client, window, Input::Get { key: key.into() }, output)
}

fn cas(
    client: usize,
    window: (Nanos, Nanos),
    key: &str,
    expect: &str,
    value: &str,
    swapped: bool,
) -> Operation {
    let input = Input::Cas {
        key: key.into(),
        expect: Some(expect.into()),
        value: value.into(),
    };
    op(client, window, input, Output::Swapped(swapped))
}

fn write_all(client: usize, window: (Nanos, Nanos), pairs: &[(&str, &str)]) -> Operation {
    let pairs = pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    op(client, window, Input::WriteAll { pairs }, Output::Written)
}

fn read_all(client: usize, window: (Nanos, Nanos), keys: &[&str], seen: &[&str]) -> Operation {
    let keys = keys.iter().map(|&k| k.to_owned()).collect();
    let seen = seen.iter().map(|&v| Some(v.to_owned())).collect();
    op(
        client,
        window,
        Input::ReadAll { keys },
        Output::GotAll(seen),
    )
}

/// `op` without an answer: called, never returned.
fn unanswered(op: Operation) -> Operation {
    Operation {
        ret: None,
        output: Output::Unknown,
        ..op
    }
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, generated::group_of, LIMIT)
}

fn assert_not_linearizable(history: &[Operation]) -> String {
    match verdict(history) {
        Verdict::NotLinearizable { explanation, .. } => explanation,
        other => panic!("expected NotLinearizable, got {other:?}"),
    }
}

#[test]
fn a_read_missing_an_acknowledged_write_is_not_linearizable() {
    assert_not_linearizable(&[put(0, (0, 10), "g/a", "v1"), get(1, (20, 30), "g/a", None)]);
}

#[test]
fn a_read_of_a_value_never_written_is_not_linearizable() {
    assert_not_linearizable(&[
        put(0, (0, 10), "g/a", "v1"),
        get(1, (20, 30), "g/a", Some("v9")),
    ]);
}

#[test]
fn a_lost_acknowledged_write_is_not_linearizable() {
    assert_not_linearizable(&[
        put(0, (0, 10), "g/a", "v1"),
        put(0, (20, 30), "g/a", "v2"),
        get(1, (40, 50), "g/a", Some("v1")),
        get(1, (60, 70), "g/a", Some("v1")),
    ]);
}

#[test]
fn a_read_all_seeing_half_of_a_write_all_is_not_linearizable() {
    assert_not_linearizable(&[
        write_all(0, (0, 10), &[("g/a", "a0"), ("g/b", "b0")]),
        write_all(0, (20, 40), &[("g/a", "a1"), ("g/b", "b1")]),
        read_all(1, (15, 45), &["g/a", "g/b"], &["a1", "b0"]),
    ]);
}

#[test]
fn two_cas_from_the_same_expected_value_both_succeeding_is_not_linearizable() {
    assert_not_linearizable(&[
        put(0, (0, 10), "g/a", "v0"),
        cas(1, (20, 40), "g/a", "v0", "v1", true),
        cas(2, (25, 45), "g/a", "v0", "v2", true),
    ]);
}

#[test]
fn a_read_going_back_in_time_is_not_linearizable() {
    assert_not_linearizable(&[
        put(0, (0, 10), "g/a", "v1"),
        put(0, (20, 60), "g/a", "v2"),
        get(1, (30, 40), "g/a", Some("v2")),
        get(1, (45, 55), "g/a", Some("v1")),
    ]);
}

#[test]
fn an_answer_that_does_not_fit_its_request_is_not_linearizable() {
    let get_answered_written = op(
        0,
        (0, 10),
        Input::Get { key: "g/a".into() },
        Output::Written,
    );
    assert_not_linearizable(&[get_answered_written]);
}

#[test]
fn the_explanation_names_the_prefix_the_state_and_the_read_that_cannot_be_placed() {
    let history = [
        put(0, (0, 10), "g/a", "v1"),
        put(1, (0, 10), "h/a", "w1"),
        put(0, (20, 30), "g/a", "v2"),
        get(2, (40, 50), "g/a", Some("v1")),
    ];
    let Verdict::NotLinearizable { group, explanation } = verdict(&history) else {
        panic!("expected NotLinearizable");
    };
    assert_eq!(group, "g");
    assert!(explanation.contains("has 2 operations"), "{explanation}");
    assert!(explanation.contains(r#"{g/a: "v2"}"#), "{explanation}");
    let blocked = explanation
        .split("could be placed after that prefix:\n")
        .nth(1)
        .unwrap_or_default();
    assert!(
        blocked.starts_with("  #3 client 2 call 40 ret 50"),
        "{explanation}"
    );
    assert!(
        !explanation.contains("h/a"),
        "another group's operations: {explanation}"
    );
}

#[test]
fn an_operation_spanning_two_groups_checks_them_as_one() {
    let read_both = op(
        1,
        (20, 30),
        Input::ReadAll {
            keys: vec!["g/a".into(), "h/a".into()],
        },
        Output::GotAll(vec![None, None]),
    );
    let Verdict::NotLinearizable { group, .. } =
        verdict(&[put(0, (0, 10), "h/a", "v1"), read_both])
    else {
        panic!("expected NotLinearizable");
    };
    assert_eq!(group, "g+h");
}

#[test]
fn a_search_past_its_limit_answers_unknown() {
    let shape = generated::Shape {
        ops: 2_000,
        groups: 1,
        keys_per_group: 2,
        clients: 8,
        max_window: 50,
        unanswered_percent: 0,
    };
    let history = generated::history(&shape, 7);
    assert_eq!(
        check(&history, generated::group_of, Duration::ZERO),
        Verdict::Unknown { group: "g0".into() }
    );
}

#[test]
fn concurrent_writes_may_be_read_in_either_order() {
    let writes = [put(0, (0, 30), "g/a", "v1"), put(1, (5, 35), "g/a", "v2")];
    for (first, second) in [("v1", "v2"), ("v2", "v1")] {
        let mut history = writes.to_vec();
        history.push(get(2, (10, 20), "g/a", Some(first)));
        history.push(get(2, (21, 25), "g/a", Some(second)));
        history.push(get(3, (40, 50), "g/a", Some(second)));
        assert_eq!(
            verdict(&history),
            Verdict::Linearizable,
            "{first} then {second}"
        );
    }
}

#[test]
fn an_unanswered_write_may_take_effect_long_after_its_call() {
    assert_eq!(
        verdict(&[
            put(0, (0, 10), "g/a", "v1"),
            unanswered(put(1, (20, 0), "g/a", "v2")),
            get(2, (30, 40), "g/a", Some("v1")),
            get(2, (1_000_000, 1_000_010), "g/a", Some("v2")),
        ]),
        Verdict::Linearizable
    );
}

#[test]
fn an_unanswered_write_may_never_take_effect() {
    assert_eq!(
        verdict(&[
            put(0, (0, 10), "g/a", "v1"),
            unanswered(put(1, (20, 0), "g/a", "v2")),
            get(2, (30, 40), "g/a", Some("v1")),
            get(2, (1_000_000, 1_000_010), "g/a", Some("v1")),
        ]),
        Verdict::Linearizable
    );
}

#[test]
fn an_unanswered_write_cannot_take_effect_before_its_call() {
    assert_not_linearizable(&[
        put(0, (0, 10), "g/a", "v1"),
        get(2, (20, 30), "g/a", Some("v2")),
        unanswered(put(1, (40, 0), "g/a", "v2")),
    ]);
}

#[test]
fn an_unanswered_write_nobody_read_may_explain_a_refused_cas() {
    assert_eq!(
        verdict(&[
            put(0, (0, 10), "g/a", "v1"),
            unanswered(put(1, (20, 0), "g/a", "v2")),
            cas(2, (30, 40), "g/a", "v1", "v3", false),
        ]),
        Verdict::Linearizable
    );
}

#[test]
fn an_unanswered_delete_may_explain_a_read_of_nothing() {
    let delete = op(
        1,
        (20, 0),
        Input::Delete { key: "g/a".into() },
        Output::Written,
    );
    assert_eq!(
        verdict(&[
            put(0, (0, 10), "g/a", "v1"),
            unanswered(delete),
            get(2, (30, 40), "g/a", None),
        ]),
        Verdict::Linearizable
    );
}

#[test]
fn two_unanswered_deletes_may_together_explain_one_read_all() {
    let delete = |client, call, key: &str| {
        let input = Input::Delete { key: key.into() };
        unanswered(op(client, (call, 0), input, Output::Written))
    };
    assert_eq!(
        verdict(&[
            write_all(0, (0, 10), &[("g/a", "a1"), ("g/b", "b1")]),
            delete(1, 20, "g/a"),
            delete(2, 25, "g/b"),
            op(
                3,
                (30, 40),
                Input::ReadAll {
                    keys: vec!["g/a".into(), "g/b".into()],
                },
                Output::GotAll(vec![None, None]),
            ),
        ]),
        Verdict::Linearizable
    );
}

#[test]
fn an_unanswered_cas_whose_value_was_read_must_have_found_its_expected_value() {
    let unanswered_cas = unanswered(cas(1, (20, 0), "g/a", "v0", "v1", true));
    let read_v1 = get(2, (30, 40), "g/a", Some("v1"));
    let v0 = put(0, (0, 10), "g/a", "v0");
    assert_eq!(
        verdict(&[v0.clone(), unanswered_cas.clone(), read_v1.clone()]),
        Verdict::Linearizable
    );
    let v5 = put(0, (12, 15), "g/a", "v5");
    assert_not_linearizable(&[v0, v5, unanswered_cas, read_v1]);
}

#[test]
fn of_two_concurrent_cas_from_the_same_value_one_wins() {
    assert_eq!(
        verdict(&[
            put(0, (0, 10), "g/a", "v0"),
            cas(1, (20, 40), "g/a", "v0", "v1", false),
            cas(2, (25, 45), "g/a", "v0", "v2", true),
            get(3, (50, 60), "g/a", Some("v2")),
        ]),
        Verdict::Linearizable
    );
}

/// A small generated history, shaped by the proptest's parameters.
fn small_shape(
    clients: usize,
    groups: usize,
    max_window: Nanos,
    unanswered_percent: u32,
) -> generated::Shape {
    generated::Shape {
        ops: 200,
        groups,
        keys_per_group: 3,
        clients,
        max_window,
        unanswered_percent,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn histories_of_a_sequential_model_are_linearizable(
        seed in any::<u64>(),
        clients in 1usize..8,
        groups in 1usize..4,
        max_window in 0u64..80,
        unanswered_percent in 0u32..10,
    ) {
        let history = generated::history(&small_shape(clients, groups, max_window, unanswered_percent), seed);
        prop_assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn one_impossible_read_makes_them_not_linearizable(
        seed in any::<u64>(),
        clients in 1usize..8,
        groups in 1usize..4,
        max_window in 0u64..80,
        unanswered_percent in 0u32..10,
    ) {
        let mut history = generated::history(&small_shape(clients, groups, max_window, unanswered_percent), seed);
        let read = generated::impossible_read(&mut history, seed);
        prop_assume!(read.is_some());
        let verdict = verdict(&history);
        prop_assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "read #{:?}: {:?}", read, verdict);
    }
}

#[test]
fn a_chaos_run_sized_history_gets_a_verdict_within_the_limit() {
    let shape = generated::Shape {
        ops: 20_000,
        groups: 50,
        keys_per_group: 4,
        clients: 16,
        max_window: 200,
        unanswered_percent: 2,
    };
    let history = generated::history(&shape, 17);
    let verdict = check(&history, generated::group_of, Duration::from_secs(60));
    assert_eq!(verdict, Verdict::Linearizable);
}
