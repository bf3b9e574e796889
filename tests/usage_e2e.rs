//! `mtp usage` on the real engine with the stub gateway: the CSV is what the gateways report,
//! row for row, and a tenant that could not be read is named, with no rows, never zero.

mod apply_support;

use apply_support::*;
use serde_json::Value;

const SEED_ALPHA: &str = r#"{
  "2026-11-30": {"input": 1200, "output": 340, "cacheRead": 5000, "cacheWrite": 60,
                 "inputCost": 0.0036, "outputCost": 0.0051, "cacheReadCost": 0.0015, "cacheWriteCost": 0.000225},
  "2026-12-01": {"input": 10, "output": 2, "missingCostEntries": 4,
                 "missingCostByModel": {"openrouter/some-model": 4}}
}"#;
const SEED_BRAVO: &str = r#"{
  "2026-11-29": {"input": 7, "output": 3, "inputCost": 1.25, "outputCost": 0.5}
}"#;

#[test]
fn usage_csv_is_what_the_gateways_report_and_unread_tenants_are_named() {
    let mut f = TestFleet::new("usage");
    f.declare(vec![
        Tenant::new("alpha"),
        Tenant::new("bravo"),
        Tenant::new("charlie"),
    ]);
    f.apply_ok();
    f.write_data_file("alpha", "usage-seed.json", SEED_ALPHA);
    f.write_data_file("bravo", "usage-seed.json", SEED_BRAVO);
    docker_ok(&["stop", "-t", "1", &format!("{}-charlie", f.name)]);

    let args = ["usage", "--from", "2026-11-29", "--to", "2026-12-01"];
    let o = f.mtp(&[&args[..], &["--csv"]].concat());
    let csv = stdout(&o);
    println!("{csv}");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(3),
        "unread tenant: exit 3\n{}",
        text(&o)
    );
    assert_eq!(
        csv,
        "tenant,date,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,total_tokens,cost_usd,missing_cost_entries\n\
         alpha,2026-11-29,0,0,0,0,0,0,0\n\
         alpha,2026-11-30,1200,340,5000,60,6600,0.010425,0\n\
         alpha,2026-12-01,10,2,0,0,12,0,4\n\
         bravo,2026-11-29,7,3,0,0,10,1.75,0\n\
         bravo,2026-11-30,0,0,0,0,0,0,0\n\
         bravo,2026-12-01,0,0,0,0,0,0,0\n"
    );
    assert!(
        err.contains("unread: charlie") && err.contains("not running"),
        "{err}"
    );

    let o = f.mtp(&[&args[..], &["--json"]].concat());
    assert_eq!(o.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&o.stdout).expect("usage --json is JSON");
    assert_eq!(v["unread"][0]["tenant"], "charlie", "{v:#}");
    assert_eq!(v["tenants"].as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(v["tenants"][0]["total"]["missing_cost_entries"], 4);
    assert_eq!(v["tenants"][1]["total"]["cost_usd"], 1.75);

    // The human table: one total line per tenant; read tenants only, and with only them, exit 0.
    let o = f.mtp_ok(&[
        "usage",
        "alpha",
        "bravo",
        "--from",
        "2026-11-29",
        "--to",
        "2026-12-01",
    ]);
    let table = stdout(&o);
    println!("{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("alpha") && l.contains("$0.01")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("bravo") && l.contains("$1.75")),
        "{table}"
    );
    assert!(!table.contains("charlie"));

    for out in [csv, table, err] {
        for s in f.secret_values() {
            assert!(!out.contains(&s), "a secret value in the output");
        }
    }
}
