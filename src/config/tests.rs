use super::*;

#[test]
fn defaults_are_pinned() {
    let c = Config::default();
    assert_eq!(c.mesh.custody_ms, 20_000);
    assert_eq!(c.mesh.interest_hold_down_ms, 500);
    assert_eq!(c.mesh.topology_refresh_ms, 2000);
    assert_eq!(c.mesh.topology_expiry_ms, 3 * c.mesh.topology_refresh_ms);
    assert_eq!(c.mesh.topology_routers_max, 256);
    assert_eq!(c.mesh.links_max, 64);
    assert_eq!(c.mesh.explain_timeout_ms, 2000);
    assert_eq!(c.mesh.explains_max, 16);
    assert_eq!(c.mesh.explain_reply_bytes_max, 65_536);
    assert_eq!(c.mqtt.listen, "127.0.0.1:1883");
    fn ws_defaults<S: crate::config::WsSide>(ws: &crate::config::WsConfig<S>, path: &str) {
        assert_eq!(ws.listen, "", "WebSocket listeners are off by default");
        assert_eq!(ws.path, path);
        assert!(!ws.tls);
        assert_eq!(ws.handshake_bytes_max, 8192);
        assert_eq!(ws.frame_bytes_max, 2 << 20);
        assert_eq!(ws.message_bytes_max, 2 << 20);
        assert_eq!(ws.read_buffer_bytes, 16 * 1024);
        assert_eq!(ws.write_frame_bytes_max, 64 * 1024);
    }
    ws_defaults(&c.mqtt.ws, "/mqtt");
    ws_defaults(&c.nats.ws, "/");
    // [trace]
    assert!(c.trace.propagate);
    assert_eq!(
        c.trace.otlp_endpoint, "",
        "no spans unless an endpoint is set"
    );
    assert_eq!(c.trace.queue_max, 8192);
    assert_eq!(c.trace.export_batch_max, 512);
    assert_eq!(c.trace.export_interval_ms, 200);
    assert_eq!(c.trace.export_timeout_ms, 5_000);
    assert!(!c.trace.exporting());
    assert_eq!(c.runtime.shards, 0);
    assert_eq!(c.runtime.ring_capacity, 4096);
    assert_eq!(c.runtime.spin_us, 0, "no busy polling unless asked");
    assert_eq!(c.runtime.spin(), std::time::Duration::ZERO);
    assert_eq!(c.runtime.match_cache_entries_max, 4096);
    assert_eq!(c.limits.packet_bytes_max, 1 << 20);
    assert_eq!(c.limits.queued_messages_max, 100_000);
    assert_eq!(c.limits.queued_bytes_max, 16 << 20);
    assert_eq!(c.limits.inflight_max, 1024);
    assert_eq!(c.limits.read_buffers_spare_max, 256);
    assert_eq!(c.limits.slow_consumer_policy, SlowConsumerPolicy::Drop);
    assert!(c.socket.tcp_nodelay);
    assert_eq!(c.nats.listen, "127.0.0.1:4222");
    assert!(c.nats.enabled);
    assert_eq!(c.nats.ping_interval_ms, 120_000);
    assert_eq!(c.nats.pings_outstanding_max, 2);
    assert_eq!(c.nats.payload_bytes_max, 1 << 20);
    assert_eq!(c.amqp.listen, "", "AMQP is off by default");
    assert!(!c.amqp.tls);
    assert_eq!(c.amqp.max_frame_size, 65_536);
    assert_eq!(c.amqp.message_bytes_max, 1 << 20);
    assert_eq!(c.amqp.channel_max, 255);
    assert_eq!(c.amqp.handles_max, 64);
    assert_eq!(c.amqp.idle_timeout_ms, 60_000);
    assert_eq!(c.amqp.sender_credit, 1000);
    assert_eq!(c.amqp.connections_max, 0);
    assert_eq!(c.admin.listen, "127.0.0.1:8222");
    assert_eq!(c.admin.page_size_max, 1000);
    assert_eq!(c.log.format, "text");
    assert_eq!(c.admin.request_bytes_max, 8192);
    assert_eq!(c.admin.request_timeout_ms, 2000);
    assert_eq!(c.admin.console_interval_ms, 1000);
    assert_eq!(c.admin.console_streams_max, 8);
    assert_eq!(c.admin.console_stream_bytes_max, 256 * 1024);
    assert_eq!(c.admin.console_topics_max, 16);
    assert_eq!(c.runtime.bind_retry_ms, 5000);
    assert_eq!(c.runtime.memory_trim_ms, 1000);
    assert_eq!(c.runtime.numa_node, None);
    assert_eq!(c.mqtt.sys_interval_s, 0);
    assert_eq!(c.mqtt.keep_alive_max_s, 0);
    assert_eq!(c.mqtt.server_keep_alive_s, None);
    assert_eq!(c.security.allow_anonymous, None);
    assert_eq!(c.security.default_account, "default");
    assert_eq!(c.http.listen, "");
    assert_eq!(c.http.head_bytes_max, 8192);
    assert_eq!(c.http.body_bytes_max, 1 << 20);
    assert_eq!(c.http.headers_max, 64);
    assert_eq!(c.http.connections_max, 0);
    assert_eq!(c.http.keep_alive_idle_ms, 60_000);
    assert_eq!(c.http.sse_heartbeat_ms, 15_000);
    assert_eq!(c.security.auth_failures_max, 10);
    assert_eq!(c.security.auth_failure_window_ms, 10_000);
    assert_eq!(c.security.auth_sources_max, 10_000);
    assert_eq!(c.security.password_checks_max, 1);
    assert_eq!(c.security.connections_per_source_max, 0);
    assert_eq!(c.security.connections_per_user_max, 0);
    assert_eq!(c.security.accept_rate_per_s, 0);
    assert!(c.security.users.is_empty() && c.security.accounts.is_empty());
    assert_eq!(c.mqtt.tls.listen, "");
    assert_eq!(c.mqtt.tls.client_auth, ClientAuth::Required);
    assert_eq!(c.mqtt.tls.identity, TlsIdentity::None);
    assert!(!c.nats.tls.required);
    assert_eq!(c.nats.tls.handshake_first, HandshakeFirst::Flag(false));
    assert_eq!(c.nats.tls.client_auth, ClientAuth::Required);
    assert_eq!(c.mqtt.connections_max, 0);
    assert_eq!(c.nats.connections_max, 0);
    assert_eq!(c.admin.token, "");
    assert_eq!(c.persistence.dir, "");
    assert!(!c.persistence.is_on());
    assert_eq!(c.persistence.sync, SyncPolicy::Batch);
    assert_eq!(c.persistence.sync_interval_us, 1000);
    assert_eq!(c.persistence.sync_bytes, 1 << 20);
    assert_eq!(c.persistence.bytes_max, 1 << 30);
    assert_eq!(c.persistence.segment_bytes, 64 << 20);
    assert_eq!(c.persistence.buffer_bytes_max, 8 << 20);
    // An empty file is the defaults.
    assert_eq!(Config::from_toml("", "x").unwrap(), c);
}

#[test]
fn changed_keys_are_named() {
    let a = Config::default();
    let mut b = a.clone();
    b.limits.inflight_max = 7;
    b.log.level = "debug".into();
    assert_eq!(
        changed_keys(&a, &b),
        vec!["limits.inflight_max", "log.level"]
    );
    assert!(changed_keys(&a, &a).is_empty());
    // An optional key set, then unset: named both ways (it needs a restart).
    let mut c = a.clone();
    c.runtime.numa_node = Some(0);
    assert_eq!(changed_keys(&a, &c), vec!["runtime.numa_node"]);
    assert_eq!(changed_keys(&c, &a), vec!["runtime.numa_node"]);
}

#[test]
fn cpu_lists() {
    assert_eq!(parse_cpu_list("0-3").unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(parse_cpu_list("0,2").unwrap(), vec![0, 2]);
    assert_eq!(parse_cpu_list("0-1,4").unwrap(), vec![0, 1, 4]);
    assert!(parse_cpu_list("3-1").is_err());
    assert!(parse_cpu_list("a").is_err());
    assert!(parse_cpu_list("").is_err());
}

#[test]
fn shards_share_cores() {
    let mut c = Config::default();
    c.apply(&Overrides {
        shards: Some(4),
        cores: Some("0,1".into()),
        ..Default::default()
    });
    assert_eq!(c.resolve(&[0, 1]).unwrap().shard_cores, vec![0, 1, 0, 1]);
}

#[test]
fn errors_name_the_key() {
    let e = Config::from_toml("[limits]\nqueued_bytes_maxx = 3\n", "f.toml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("queued_bytes_maxx"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    let e = Config::from_toml("[limits]\nqueued_bytes_max = \"x\"\n", "f.toml").unwrap_err();
    assert!(e.to_string().contains("queued_bytes_max"), "{e}");
    let c = Config::from_toml("[limits]\nqueued_bytes_max = 3\n", "f.toml").unwrap();
    let e = c.resolve(&[0]).unwrap_err();
    assert!(e.to_string().starts_with("limits.queued_bytes_max"), "{e}");
    let c = Config::from_toml("[mqtt]\nlisten = \"nowhere\"\n", "f.toml").unwrap();
    assert!(c
        .resolve(&[0])
        .unwrap_err()
        .to_string()
        .starts_with("mqtt.listen"));
    let c = Config::from_toml("[runtime]\nnuma_node = 1024\n", "f.toml").unwrap();
    let e = c.resolve(&[0]).unwrap_err();
    assert!(e.to_string().starts_with("runtime.numa_node"), "{e}");
    let c = Config::from_toml("[runtime]\nnuma_node = 1\n", "f.toml").unwrap();
    assert_eq!(c.resolve(&[0]).unwrap().config.runtime.numa_node, Some(1));
}

#[test]
fn admin_off_loopback_needs_a_token() {
    let c = Config::from_toml("[admin]\nlisten = \"0.0.0.0:8222\"\n", "f.toml").unwrap();
    let e = c.resolve(&[0]).unwrap_err().to_string();
    assert!(e.starts_with("admin.token"), "{e}");
    assert!(e.contains("0.0.0.0:8222") && !e.contains('\n'), "{e}");
    let c = Config::from_toml(
        "[admin]\nlisten = \"0.0.0.0:8222\"\ntoken = \"s3cret\"\n",
        "f.toml",
    )
    .unwrap();
    assert!(c.resolve(&[0]).is_ok());
    // Loopback (v4 or v6) needs none; a disabled endpoint neither.
    for toml in [
        "[admin]\nlisten = \"127.0.0.1:8222\"\n",
        "[admin]\nlisten = \"[::1]:8222\"\n",
        "[admin]\nenabled = false\nlisten = \"0.0.0.0:8222\"\n",
    ] {
        let c = Config::from_toml(toml, "f.toml").unwrap();
        assert!(c.resolve(&[0]).is_ok(), "{toml}");
    }
}

#[test]
fn open_listeners_need_allow_anonymous_or_users() {
    let resolve = |extra: &str| {
        let c = Config::from_toml(extra, "t").unwrap();
        c.resolve(&[0]).map(|_| ()).map_err(|e| e.to_string())
    };
    let e = resolve("[mqtt]\nlisten = \"0.0.0.0:0\"\n").unwrap_err();
    assert!(
        e.starts_with("security.allow_anonymous: mqtt.listen = 0.0.0.0:0 is not a loopback"),
        "{e}"
    );
    let e = resolve("[nats]\nlisten = \"0.0.0.0:0\"\n").unwrap_err();
    assert!(e.contains("nats.listen = 0.0.0.0:0"), "{e}");
    // NATS off: its address does not matter.
    resolve("[nats]\nenabled = false\nlisten = \"0.0.0.0:0\"\n").unwrap();
    resolve("[mqtt]\nlisten = \"[::1]:0\"\n").unwrap();
    resolve("[mqtt]\nlisten = \"0.0.0.0:0\"\n[security]\nallow_anonymous = true\n").unwrap();
    // Explicitly false: nobody anonymous anywhere, nothing open.
    resolve("[mqtt]\nlisten = \"0.0.0.0:0\"\n[security]\nallow_anonymous = false\n").unwrap();
    resolve("[mqtt]\nlisten = \"0.0.0.0:0\"\n[[security.users]]\nname = \"a\"\ntoken = \"t\"\n")
        .unwrap();
    let e = resolve("[security]\npassword_checks_max = 0\n").unwrap_err();
    assert!(e.starts_with("security.password_checks_max"), "{e}");
}

#[test]
fn persistence_is_checked_naming_the_key() {
    let resolve = |toml: &str| {
        let c = Config::from_toml(toml, "f.toml").map_err(|e| e.to_string())?;
        c.resolve(&[0]).map(|_| ()).map_err(|e| e.to_string())
    };
    let e = resolve("[persistence]\ndir = \"/d\"\nsync = \"sometimes\"\n").unwrap_err();
    assert!(e.contains("sync") && e.contains("sometimes"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    for policy in ["always", "batch", "none"] {
        resolve(&format!(
            "[persistence]\ndir = \"/d\"\nsync = \"{policy}\"\n"
        ))
        .unwrap();
    }
    let e = resolve("[persistence]\ndir = \"/d\"\nsegment_bytes = 2000000\nbytes_max = 2000000\n")
        .unwrap_err();
    assert!(e.starts_with("persistence.segment_bytes"), "{e}");
    let e = resolve("[persistence]\ndir = \"/d\"\nsync_interval_us = 0\n").unwrap_err();
    assert!(e.starts_with("persistence.sync_interval_us"), "{e}");
    let e = resolve("[persistence]\ndir = \"/d\"\n[limits]\npacket_bytes_max = 100000000\n")
        .unwrap_err();
    assert!(e.starts_with("limits.packet_bytes_max"), "{e}");
    // Off: the other keys are not checked (nothing uses them).
    resolve("[persistence]\nsync_interval_us = 0\n").unwrap();
    let mut c = Config::default();
    c.apply(&Overrides {
        persistence_dir: Some("/var/lib/weft".into()),
        ..Default::default()
    });
    assert!(c.persistence.is_on());
    assert_eq!(c.persistence.per_shard(4).bytes_max, (1 << 30) / 4);
}

#[test]
fn amqp_keys_are_checked_naming_the_key() {
    let e = Config::from_toml("[amqp]\nmax_frame_sizee = 3\n", "f.toml").unwrap_err();
    assert!(e.to_string().contains("max_frame_sizee"), "{e}");
    let resolve = |toml: &str| {
        Config::from_toml(toml, "f.toml")
            .unwrap()
            .resolve(&[0])
            .map(|r| r.amqp_listen)
    };
    let e = resolve("[amqp]\nlisten = \"127.0.0.1:0\"\nmax_frame_size = 511\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "amqp.max_frame_size: 511 is below the minimum of 512"
    );
    let e = resolve("[amqp]\nlisten = \"127.0.0.1:0\"\nsender_credit = 0\n").unwrap_err();
    assert!(e.to_string().starts_with("amqp.sender_credit"), "{e}");
    let e = resolve("[amqp]\nlisten = \"nowhere\"\n").unwrap_err();
    assert!(e.to_string().starts_with("amqp.listen"), "{e}");
    let e = resolve("[amqp]\nlisten = \"127.0.0.1:0\"\ntls = true\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "amqp.tls: needs mqtt.tls.cert and mqtt.tls.key"
    );
    let e = resolve("[amqp]\nlisten = \"0.0.0.0:5672\"\n").unwrap_err();
    assert!(e.to_string().contains("amqp.listen = 0.0.0.0:5672"), "{e}");
    assert_eq!(resolve("").unwrap(), None, "off by default");
    assert!(resolve("[amqp]\nlisten = \"127.0.0.1:0\"\n")
        .unwrap()
        .is_some());
}

#[test]
fn topology_bounds_are_checked_naming_the_key() {
    let resolve = |toml: &str| {
        let c = Config::from_toml(toml, "f.toml").map_err(|e| e.to_string())?;
        c.resolve(&[0]).map(|_| ()).map_err(|e| e.to_string())
    };
    let e = resolve("[mesh]\ntopology_refresh_ms = 4000\n").unwrap_err();
    assert!(
        e.starts_with("mesh.topology_expiry_ms")
            && e.contains("6000 is below twice mesh.topology_refresh_ms (4000)"),
        "{e}"
    );
    resolve("[mesh]\ntopology_refresh_ms = 3000\ntopology_expiry_ms = 9000\n").unwrap();
    let e = resolve("[mesh]\ntopology_routers_max = 0\n").unwrap_err();
    assert!(e.starts_with("mesh.topology_routers_max"), "{e}");
    let e = resolve("[mesh]\ntopology_refresh_ms = 1\n").unwrap_err();
    assert!(e.starts_with("mesh.topology_refresh_ms"), "{e}");
}

#[test]
fn trace_section_checked() {
    use crate::config::TraceConfig;
    let ok = TraceConfig {
        otlp_endpoint: "http://127.0.0.1:4318/v1/traces".into(),
        ..TraceConfig::default()
    };
    assert!(ok.check().is_ok() && ok.exporting());
    for (bad, key) in [
        (
            TraceConfig {
                otlp_endpoint: "https://collector:4318/v1/traces".into(),
                ..TraceConfig::default()
            },
            "trace.otlp_endpoint",
        ),
        (
            TraceConfig {
                otlp_endpoint: "http:///v1/traces".into(),
                ..TraceConfig::default()
            },
            "trace.otlp_endpoint",
        ),
        (
            TraceConfig {
                queue_max: 0,
                ..TraceConfig::default()
            },
            "trace.queue_max",
        ),
        (
            TraceConfig {
                export_batch_max: 0,
                ..TraceConfig::default()
            },
            "trace.export_batch_max",
        ),
    ] {
        match bad.check() {
            Err(crate::config::ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: {other:?}"),
        }
    }
    let parsed: crate::config::Config = toml::from_str(
        "[trace]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nqueue_max = 16\n",
    )
    .unwrap();
    assert_eq!(parsed.trace.queue_max, 16);
    assert!(toml::from_str::<crate::config::Config>("[trace]\nbogus = 1\n").is_err());
}

/// The console's bounds: the interval's floor (rates over a shorter
/// window jitter with the shards' 50 ms tick) and the topics' ceiling
/// (bounds a state's size), each error naming its key.
#[test]
fn console_interval_and_topics_are_bounded() {
    let resolve = |extra: &str| {
        let c = Config::from_toml(extra, "t").unwrap();
        c.resolve(&[0]).map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(resolve("[admin]\nconsole_interval_ms = 100\n").is_ok());
    let e = resolve("[admin]\nconsole_interval_ms = 99\n").unwrap_err();
    assert!(
        e.starts_with("admin.console_interval_ms: 99 is below the minimum of 100"),
        "{e}"
    );
    assert!(resolve("[admin]\nconsole_topics_max = 256\n").is_ok());
    let e = resolve("[admin]\nconsole_topics_max = 257\n").unwrap_err();
    assert!(
        e.starts_with("admin.console_topics_max: 257 exceeds the maximum of 256"),
        "{e}"
    );
}

#[test]
fn busy_polling_is_bounded_and_its_former_name_still_read() {
    let resolve = |extra: &str| {
        let c = Config::from_toml(extra, "t").unwrap();
        c.resolve(&[0]).map(|r| r.config).map_err(|e| e.to_string())
    };
    let c = resolve("[runtime]\nspin_us = 50\n").unwrap();
    assert_eq!(c.runtime.spin(), std::time::Duration::from_micros(50));
    let c = resolve("[runtime]\nspin_before_park_us = 20\n").unwrap();
    assert_eq!(c.runtime.spin(), std::time::Duration::from_micros(20));
    let e = resolve("[runtime]\nspin_us = 1000001\n").err().unwrap();
    assert!(e.starts_with("runtime.spin_us"), "{e}");
}
