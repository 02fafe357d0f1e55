//! The audit log and its filters.

use crate::support::*;

#[test]
fn every_mutation_is_audited_and_filters_narrow_the_list() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    env.customer("b@example.com", "B", &["--slug", "globex"]);
    env.ok(&["customer", "suspend", "acme", "--reason", "r"]);
    env.ok(&["customer", "reactivate", "acme"]);
    env.ok(&["customer", "update", "acme", "--name", "A2"]);

    let all = env.json(&["audit"]);
    let events = all.as_array().unwrap();
    assert_eq!(events.len(), 6, "home.init plus five mutations");
    assert_fields(
        &events[0],
        &[
            "id",
            "at",
            "actor",
            "action",
            "target_type",
            "target",
            "customer_id",
            "details",
        ],
    );
    assert_timestamp(&events[0]["at"]);
    assert_eq!(events[0]["actor"], "tester");
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");

    let acme = env.json(&["audit", "--customer", "acme"]);
    assert_eq!(acme.as_array().unwrap().len(), 4);
    assert!(acme.as_array().unwrap().iter().all(|e| e["target"] == "acme"));
    assert_eq!(
        env.json(&["audit", "--action", "customer.create"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(env.json(&["audit", "--limit", "2"]).as_array().unwrap().len(), 2);
    assert_eq!(env.json(&["audit", "--since", "1h"]).as_array().unwrap().len(), 6);
    assert_eq!(
        env.json(&["audit", "--since", "2999-01-01"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        env.json(&["audit", "--since", "2000-01-01T00:00:00Z"])
            .as_array()
            .unwrap()
            .len(),
        6
    );
    env.fails(&["audit", "--since", "last tuesday"], 2);
    env.fails(&["audit", "--customer", "ghost"], 3);
}

#[test]
fn audit_rows_cannot_be_changed() {
    let env = TestEnv::initialised();
    let err = env
        .catalog()
        .execute("UPDATE audit_events SET actor = 'mallory'", [])
        .unwrap_err();
    assert!(err.to_string().contains("cannot be changed"), "{err}");
}
