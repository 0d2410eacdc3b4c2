use super::*;

fn spec(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).unwrap()
}

fn translate_json(json: &str) -> Result<Translated, SeccompError> {
    translate(&spec(json))
}

fn nr(name: &str) -> i64 {
    syscalls::lookup(name).unwrap()
}

#[test]
fn actions_map_like_runc() {
    let cases = [
        (r#""SCMP_ACT_ALLOW""#, SeccompAction::Allow),
        (r#""SCMP_ACT_ERRNO""#, SeccompAction::Errno(1)),
        (
            r#""SCMP_ACT_ERRNO", "errnoRet": 38"#,
            SeccompAction::Errno(38),
        ),
        (r#""SCMP_ACT_KILL""#, SeccompAction::KillThread),
        (r#""SCMP_ACT_KILL_THREAD""#, SeccompAction::KillThread),
        (r#""SCMP_ACT_KILL_PROCESS""#, SeccompAction::KillProcess),
        (r#""SCMP_ACT_TRAP""#, SeccompAction::Trap),
        (r#""SCMP_ACT_TRACE""#, SeccompAction::Trace(1)),
        (
            r#""SCMP_ACT_TRACE", "errnoRet": 9"#,
            SeccompAction::Trace(9),
        ),
        (r#""SCMP_ACT_LOG""#, SeccompAction::Log),
    ];
    for (action, expected) in cases {
        let translated = translate_json(&format!(
            r#"{{"defaultAction": "SCMP_ACT_KILL_PROCESS",
                "syscalls": [{{"names": ["getpid"], "action": {action}}}]}}"#
        ))
        .unwrap();
        let rule = &translated.rules.rules[0];
        assert_eq!(rule.action, expected, "{action}");
        assert_eq!(rule.nr, nr("getpid"));
        assert!(rule.condition.is_none());
    }
}

#[test]
fn default_action_uses_default_errno_ret() {
    let translated = translate_json(r#"{"defaultAction": "SCMP_ACT_ERRNO"}"#).unwrap();
    assert_eq!(translated.rules.default_action, SeccompAction::Errno(1));
    let translated =
        translate_json(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}"#).unwrap();
    assert_eq!(translated.rules.default_action, SeccompAction::Errno(38));
    assert!(translated.rules.rules.is_empty());
}

#[test]
fn notify_is_a_clear_error() {
    let err = translate_json(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mount", "umount2"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    )
    .err()
    .unwrap();
    assert!(matches!(
        &err,
        SeccompError::UnsupportedAction { action: LinuxSeccompAction::ScmpActNotify, syscalls, .. }
            if syscalls == &["mount", "umount2"]
    ));
    let message = err.to_string();
    assert!(message.contains("SCMP_ACT_NOTIFY"), "{message}");
    assert!(message.contains("mount, umount2"), "{message}");

    let err = translate_json(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#)
        .err()
        .unwrap();
    assert!(err.to_string().contains("the default action"), "{err}");
}

#[test]
fn errno_ret_must_fit_16_bits() {
    let err = translate_json(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}"#,
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, SeccompError::InvalidErrnoRet { errno: 70000, .. }),
        "{err}"
    );
}

#[test]
fn unknown_names_are_skipped_not_fatal() {
    let translated = translate_json(
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "syscalls": [
              {"names": ["chown32", "getpid", "no_such_syscall", "chown32"], "action": "SCMP_ACT_ALLOW"}
            ]}"#,
    )
    .unwrap();
    assert_eq!(translated.skipped, ["chown32", "no_such_syscall"]);
    assert_eq!(translated.rules.rules.len(), 1);
    assert_eq!(translated.rules.rules[0].nr, nr("getpid"));
}

#[test]
fn conditions_on_distinct_args_are_one_rule() {
    let translated = translate_json(
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
              {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
              {"index": 1, "value": 4294443006, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
            ]}]}"#,
    )
    .unwrap();
    assert_eq!(translated.rules.rules.len(), 1);
    assert!(translated.rules.rules[0].condition.is_some());
}

#[test]
fn conditions_on_the_same_arg_are_split_like_runc() {
    let translated = translate_json(
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["personality", "getpid"], "action": "SCMP_ACT_ALLOW", "args": [
              {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
              {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
              {"index": 1, "value": 3, "op": "SCMP_CMP_GT"}
            ]}]}"#,
    )
    .unwrap();
    // runc: once an index repeats, every condition is its own rule, for every name.
    assert_eq!(translated.rules.rules.len(), 6);
    assert!(translated.rules.rules.iter().all(|r| r.condition.is_some()));
}

#[test]
fn every_operator_translates() {
    for op in ["NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ"] {
        let translated = translate_json(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{{"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
                  "args": [{{"index": 5, "value": 7, "valueTwo": 3, "op": "SCMP_CMP_{op}"}}]}}]}}"#
        ))
        .unwrap();
        assert!(translated.rules.rules[0].condition.is_some(), "{op}");
    }
}

#[test]
fn arg_index_above_five_is_an_error() {
    let err = translate_json(
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, SeccompError::InvalidArgIndex { syscall, index: 6, .. } if syscall == "getpid"),
        "{err}"
    );
}

#[test]
fn filter_flags_map_to_seccomp_bits() {
    let translated = translate_json(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                      "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
    )
    .unwrap();
    assert_eq!(
        translated.flags,
        libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
    );
}
