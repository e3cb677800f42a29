use super::*;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/numa")
        .join(name)
}

fn topology(name: &str) -> Topology {
    Topology::read(&fixture(name))
        .unwrap()
        .expect("the fixture exists")
}

fn runtime(shards: usize, cores: &str) -> RuntimeConfig {
    RuntimeConfig {
        shards,
        cores: cores.into(),
        ..RuntimeConfig::default()
    }
}

const ALL: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

#[test]
fn cpulists_in_the_kernel_format() {
    assert_eq!(
        parse_cpulist("0-3,8-11\n").unwrap(),
        vec![0, 1, 2, 3, 8, 9, 10, 11]
    );
    assert_eq!(parse_cpulist("0\n").unwrap(), vec![0]);
    assert_eq!(parse_cpulist("5").unwrap(), vec![5]);
    assert_eq!(parse_cpulist("\n").unwrap(), Vec::<usize>::new());
    assert_eq!(parse_cpulist("").unwrap(), Vec::<usize>::new());
    // Out of order and overlapping: ascending, once each.
    assert_eq!(parse_cpulist("4,0-1,1").unwrap(), vec![0, 1, 4]);
    assert_eq!(parse_cpulist("8191").unwrap(), vec![8191]);
    for bad in [
        "3-1", "zero", "0-", "-1", "1,,2", "0-8192", "8192", "0 - 1x", "0-3:2",
    ] {
        assert!(parse_cpulist(bad).is_err(), "{bad} accepted");
    }
    assert!(parse_cpulist("3-1").unwrap_err().contains("reversed"));
}

#[test]
fn reads_a_two_node_tree() {
    let t = topology("two-node");
    assert_eq!(t.nodes().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(t.cores(0), Some(&[0, 1, 2, 3][..]));
    assert_eq!(t.cores(1), Some(&[4, 5, 6, 7][..]));
    assert_eq!(t.cores(2), None);
}

#[test]
fn reads_a_four_node_tree() {
    let t = topology("four-node");
    assert_eq!(t.nodes().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(t.cores(1), Some(&[2, 3, 10, 11][..]));
    assert_eq!(t.cores(3), Some(&[6, 7, 14, 15][..]));
}

#[test]
fn a_kernel_without_numa_is_one_node() {
    assert_eq!(Topology::read(&fixture("no-such-tree")).unwrap(), None);
    let t = Topology::single(&[0, 1]);
    assert_eq!(t.cores(0), Some(&[0, 1][..]));
    let p = place(&t, 0, &runtime(0, ""), &[0, 1]).unwrap();
    assert_eq!(p.shard_cores, vec![0, 1]);
    assert!(matches!(
        place(&t, 1, &runtime(0, ""), &[0, 1]),
        Err(NumaError::NoSuchNode { node: 1, .. })
    ));
}

#[test]
fn malformed_trees_are_refused_naming_the_file() {
    for (name, reason) in [
        ("malformed-range", "reversed"),
        ("malformed-text", "not a cpu number"),
        ("malformed-huge", "out of range"),
        ("missing-cpulist", "No such file"),
        ("no-nodes", "no nodeN directory"),
    ] {
        let e = Topology::read(&fixture(name)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("runtime.numa_node: "), "{msg}");
        assert!(msg.contains(name), "{name}: {msg}");
        assert!(msg.contains(reason), "{name}: {msg}");
        if name != "no-nodes" {
            assert!(msg.contains("cpulist"), "{msg}");
        }
    }
}

#[test]
fn shards_go_to_the_nodes_cores() {
    let t = topology("two-node");
    let p = place(&t, 1, &runtime(0, ""), ALL).unwrap();
    assert_eq!(
        p,
        Placement {
            node: 1,
            shard_cores: vec![4, 5, 6, 7]
        }
    );
    let p = place(&t, 0, &runtime(0, ""), ALL).unwrap();
    assert_eq!(p.shard_cores, vec![0, 1, 2, 3]);
    // runtime.shards beyond the node's cores: round-robin over them.
    let p = place(&t, 1, &runtime(6, ""), ALL).unwrap();
    assert_eq!(p.shard_cores, vec![4, 5, 6, 7, 4, 5]);
    let t = topology("four-node");
    let p = place(&t, 2, &runtime(0, ""), ALL).unwrap();
    assert_eq!(p.shard_cores, vec![4, 5, 12, 13]);
}

#[test]
fn runtime_cores_and_the_affinity_mask_narrow_the_node() {
    let t = topology("two-node");
    // runtime.cores 2-5 on node 1 leaves 4 and 5.
    let p = place(&t, 1, &runtime(0, "2-5"), ALL).unwrap();
    assert_eq!(p.shard_cores, vec![4, 5]);
    // A taskset/cgroup mask without 5-7.
    let p = place(&t, 1, &runtime(0, ""), &[0, 1, 2, 3, 4]).unwrap();
    assert_eq!(p.shard_cores, vec![4]);
    let p = place(&t, 1, &runtime(3, ""), &[0, 1, 2, 3, 4]).unwrap();
    assert_eq!(p.shard_cores, vec![4, 4, 4]);
}

#[test]
fn a_missing_node_or_no_usable_core_names_the_key() {
    let t = topology("two-node");
    let e = place(&t, 2, &runtime(0, ""), ALL).unwrap_err();
    assert_eq!(
        e.to_string(),
        "runtime.numa_node: node 2 does not exist on this machine (nodes: 0,1)"
    );
    let e = place(&t, 1, &runtime(0, "0-3"), ALL).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("runtime.numa_node: node 1 has no core"),
        "{msg}"
    );
    assert!(msg.contains("its cores: 4,5,6,7"), "{msg}");
    assert!(msg.contains("runtime.cores is '0-3'"), "{msg}");
    let e = place(&t, 1, &runtime(0, ""), &[0, 1]).unwrap_err();
    assert!(e.to_string().contains("this process may run on 0,1"), "{e}");
    // A node with memory and no CPU.
    let t = topology("cpuless-node");
    let e = place(&t, 1, &runtime(0, ""), ALL).unwrap_err();
    assert!(e.to_string().contains("its cores: none"), "{e}");
}

#[test]
fn spawned_threads_inherit_the_preferred_node() {
    // On a thread of its own: the policy must not leak into the test
    // harness's threads.
    std::thread::spawn(|| {
        assert_eq!(describe_policy(), "default (first touch)");
        let guard = NodeMemory::prefer(0).expect("set_mempolicy on node 0");
        assert_eq!(describe_policy(), "preferred node 0");
        let child = std::thread::spawn(describe_policy).join().unwrap();
        assert_eq!(child, "preferred node 0");
        drop(guard);
        assert_eq!(describe_policy(), "default (first touch)");
        let child = std::thread::spawn(describe_policy).join().unwrap();
        assert_eq!(child, "default (first touch)");
    })
    .join()
    .unwrap();
}

#[test]
fn this_machine_has_node_0() {
    let allowed = allowed_cores();
    assert!(!allowed.is_empty());
    let p = place_on_this_machine(0, &runtime(0, "")).unwrap();
    assert!(p.shard_cores.iter().all(|c| allowed.contains(c)), "{p:?}");
}
