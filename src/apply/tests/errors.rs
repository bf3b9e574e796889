//! The executor's typed errors read as they did when they were strings, and keep their key.

use crate::apply::NetworkError;

#[test]
fn a_network_error_names_the_network_and_the_pool_and_keeps_its_host() {
    let e = NetworkError::PoolExhausted {
        host: "unix:///var/run/docker.sock".into(),
        network: "ut-alpha".into(),
        pool: "10.0.0.0/16".into(),
        taken: None,
    };
    assert_eq!(
        e.to_string(),
        "cannot create network ut-alpha: no free subnet left in the pool 10.0.0.0/16"
    );
    let e = NetworkError::PoolExhausted {
        host: "unix:///var/run/docker.sock".into(),
        network: "ut-alpha".into(),
        pool: "10.0.0.0/16".into(),
        taken: Some("10.0.1.0/24".into()),
    };
    assert_eq!(
        e.to_string(),
        "cannot create network ut-alpha: no free subnet left in the pool 10.0.0.0/16 (10.0.1.0/24 was taken meanwhile)"
    );
    let NetworkError::PoolExhausted { host, .. } = e else {
        unreachable!()
    };
    assert_eq!(host, "unix:///var/run/docker.sock");
}
