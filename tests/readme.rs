//! The README's sample outputs are real outputs: each block marked
//! `<!-- real output: tests/snapshots/NAME.snap -->` is that snapshot (written by an end-to-end
//! test from what mtp printed), with its placeholders filled in as the README shows them.

use std::path::Path;

const FILLED: [(&str, &str); 3] = [
    ("<fleet>", "prod"),
    ("<engine>", "unix:///var/run/docker.sock"),
    ("<time>", "0.3s"),
];

#[test]
fn every_marked_sample_in_the_readme_is_the_snapshot_of_a_real_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let marker = "<!-- real output: ";
    let mut checked = 0;
    for (at, _) in readme.match_indices(marker) {
        let rest = &readme[at + marker.len()..];
        let snap = &rest[..rest.find(" -->").expect("a closed marker")];
        let block = rest
            .split_once("```text\n")
            .and_then(|(_, b)| b.split_once("\n```"))
            .map(|(b, _)| b)
            .unwrap_or_else(|| panic!("no text block after the marker of {snap}"));
        let text = std::fs::read_to_string(root.join(snap))
            .unwrap_or_else(|e| panic!("README names {snap}: {e}"));
        let mut body = text
            .splitn(3, "---\n")
            .nth(2)
            .unwrap_or_default()
            .to_string();
        for (from, to) in FILLED {
            body = body.replace(from, to);
        }
        assert_eq!(
            block.trim_end(),
            body.trim_end(),
            "the README's sample of {snap} is stale: copy the snapshot into it"
        );
        checked += 1;
    }
    assert!(checked >= 2, "the README marks {checked} sample(s)");
}
