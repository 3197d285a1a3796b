//! The `ray start` command a Ray container really runs, read as bash and Ray's click CLI read it.
//!
//! KubeRay v1.5.0 writes `rayStartParams` unquoted into a `bash -c` line (`--key=value`, keys
//! sorted), or runs the user's own command. raygate judges the effective options of that one
//! command: it rebuilds the container's argv as the operator does, splits the script with a
//! strict subset of bash, and parses the words after `ray start` as click does (the last of a
//! repeated option wins). Anything outside that subset (an expansion it cannot resolve, a
//! second `ray start`, a command it does not know) is refused, so that nothing a tenant writes
//! can move a Ray process off the plan unseen. `tests/runtime/ray_cli_oracle.py` runs the same
//! cases through real bash and Ray 2.60.0's click command.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::ray::{NodeGroup, Role};

/// KubeRay's annotation that makes it run the user's command unchanged.
pub const OVERWRITE_CMD_ANNOTATION: &str = "ray.io/overwrite-container-cmd";
/// The variable in which KubeRay hands the generated `ray start` line to the container.
pub const GENERATED_CMD_VAR: &str = "KUBERAY_GEN_RAY_START_CMD";
/// KubeRay's own `ulimit` argument in the generated line.
const ULIMIT_VAR: &str = "RAY_START_ULIMIT_OPEN_FILES";

/// How click reads an option of `ray start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// `--head`: no value; `--head=x` is an error.
    Flag,
    /// `-v`, `-vv`: counted.
    Count,
    /// Takes one value, `--key=value` or `--key value`.
    Value(ValueType),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Int,
    Float,
    Bool,
    Text,
    Json,
    Choice(&'static [&'static str]),
}

/// The options of Ray 2.60.0's `ray start` (click 8.5.1), as `start.params` lists them.
pub const RAY_START_OPTIONS: &[(&str, Arity)] = &[
    ("node-ip-address", Arity::Value(ValueType::Text)),
    ("address", Arity::Value(ValueType::Text)),
    ("port", Arity::Value(ValueType::Int)),
    ("node-name", Arity::Value(ValueType::Text)),
    ("redis-username", Arity::Value(ValueType::Text)),
    ("redis-password", Arity::Value(ValueType::Text)),
    ("redis-shard-ports", Arity::Value(ValueType::Text)),
    ("object-manager-port", Arity::Value(ValueType::Int)),
    ("node-manager-port", Arity::Value(ValueType::Int)),
    ("min-worker-port", Arity::Value(ValueType::Int)),
    ("max-worker-port", Arity::Value(ValueType::Int)),
    ("worker-port-list", Arity::Value(ValueType::Text)),
    ("ray-client-server-port", Arity::Value(ValueType::Int)),
    ("memory", Arity::Value(ValueType::Int)),
    ("object-store-memory", Arity::Value(ValueType::Int)),
    ("num-cpus", Arity::Value(ValueType::Int)),
    ("num-gpus", Arity::Value(ValueType::Int)),
    ("resources", Arity::Value(ValueType::Text)),
    ("head", Arity::Flag),
    ("include-dashboard", Arity::Value(ValueType::Bool)),
    ("dashboard-host", Arity::Value(ValueType::Text)),
    ("dashboard-port", Arity::Value(ValueType::Int)),
    ("dashboard-agent-listen-port", Arity::Value(ValueType::Int)),
    ("dashboard-agent-grpc-port", Arity::Value(ValueType::Int)),
    ("runtime-env-agent-port", Arity::Value(ValueType::Int)),
    ("block", Arity::Flag),
    ("plasma-directory", Arity::Value(ValueType::Text)),
    ("object-spilling-directory", Arity::Value(ValueType::Text)),
    ("autoscaling-config", Arity::Value(ValueType::Text)),
    ("no-redirect-output", Arity::Flag),
    ("temp-dir", Arity::Value(ValueType::Text)),
    ("system-config", Arity::Value(ValueType::Json)),
    ("enable-object-reconstruction", Arity::Flag),
    ("metrics-export-port", Arity::Value(ValueType::Int)),
    ("no-monitor", Arity::Flag),
    ("tracing-startup-hook", Arity::Value(ValueType::Text)),
    ("ray-debugger-external", Arity::Flag),
    ("disable-usage-stats", Arity::Flag),
    ("labels", Arity::Value(ValueType::Text)),
    ("labels-file", Arity::Value(ValueType::Text)),
    ("include-log-monitor", Arity::Value(ValueType::Bool)),
    ("enable-resource-isolation", Arity::Flag),
    ("system-reserved-cpu", Arity::Value(ValueType::Float)),
    ("system-reserved-memory", Arity::Value(ValueType::Int)),
    ("cgroup-path", Arity::Value(ValueType::Text)),
    ("proxy-server-url", Arity::Value(ValueType::Text)),
    (
        "log-style",
        Arity::Value(ValueType::Choice(&["auto", "record", "pretty"])),
    ),
    (
        "log-color",
        Arity::Value(ValueType::Choice(&["auto", "false", "true"])),
    ),
    ("verbose", Arity::Count),
];

/// `ray start` options that keep `"true"`/`"false"` as a value (KubeRay's
/// `specialParameterOptions`); for every other key KubeRay turns `"true"` into a bare flag
/// and drops `"false"`.
const KEEPS_BOOLEAN_TEXT: &[&str] = &["log-color", "include-dashboard", "include-log-monitor"];

/// Commands that may run beside the one `ray start` in a Ray container's script: they neither
/// start a listener nor change what the shell runs next.
pub const HARMLESS_COMMANDS: &[&str] = &["ulimit", "echo", "printf", "true", ":", "sleep"];

pub fn option(name: &str) -> Option<Arity> {
    RAY_START_OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
}

/// Whether a `ray start` option sets a port a Ray process listens on.
pub fn is_port_option(name: &str) -> bool {
    name == "port"
        || name.ends_with("-port")
        || name.ends_with("-ports")
        || name == "worker-port-list"
}

/// Why raygate cannot say which `ray start` a container runs. Each names what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(message.into()))
}

/// The command a Ray container runs, as the KubeRay operator builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The container's effective command and args.
    pub argv: Vec<String>,
    /// The value of `KUBERAY_GEN_RAY_START_CMD` in the container.
    pub generated: String,
    /// Whether the user's own command runs (it holds `ray start`, or the overwrite
    /// annotation is set) instead of KubeRay's generated one.
    pub own_command: bool,
}

impl Launch {
    /// Whether `start` is KubeRay's generated command, word for word (a script that runs
    /// `$KUBERAY_GEN_RAY_START_CMD` and nothing after it): its options are `rayStartParams`.
    pub fn runs_generated(&self, start: &EffectiveStart) -> bool {
        let mut generated = split_expansion(&self.generated).unwrap_or_default();
        strip_ray_start(&mut generated).is_some() && generated == start.words
    }
}

/// One value of an effective option: the text click converts, or a flag's count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    Text(String),
    Flag,
    Count(u32),
}

impl OptionValue {
    pub fn text(&self) -> Option<&str> {
        match self {
            OptionValue::Text(t) => Some(t),
            _ => None,
        }
    }

    /// As the differential test prints it.
    pub fn shown(&self) -> String {
        match self {
            OptionValue::Text(t) => t.clone(),
            OptionValue::Flag => "true".to_owned(),
            OptionValue::Count(n) => n.to_string(),
        }
    }
}

/// The one `ray start` a container runs: its words after `start` and the options they set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectiveStart {
    pub words: Vec<String>,
    pub options: BTreeMap<&'static str, OptionValue>,
}

impl EffectiveStart {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(OptionValue::text)
    }

    /// An integer option's value, as click reads a plain decimal.
    pub fn port(&self, name: &str) -> Option<u32> {
        self.get(name).and_then(|v| v.parse().ok())
    }
}

/// A `rayStartParams` value as KubeRay renders it: strings as written, numbers and booleans
/// (which the CRD would reject) as their text.
pub fn param_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `--key=value` words KubeRay v1.5.0 renders for `params` (`convertParamMap`): keys
/// sorted, `"true"` (any case) a bare flag, `"false"` dropped, except for the options that take
/// a boolean value.
pub fn render_params(params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, value) in params {
        let lower = value.to_ascii_lowercase();
        if (lower == "true" || lower == "false") && !KEEPS_BOOLEAN_TEXT.contains(&key.as_str()) {
            if lower == "true" {
                out.push_str(&format!(" --{key} "));
            }
        } else {
            out.push_str(&format!(" --{key}={value} "));
        }
    }
    out
}

/// The params KubeRay passes for a group: the group's own, plus what the operator adds when
/// missing (`--block`, the metrics and dashboard agent ports, a worker's head address, the
/// autoscaler's `--no-monitor`).
pub fn kuberay_params(
    group: &NodeGroup<'_>,
    cluster_name: &str,
    autoscaling: bool,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut params = BTreeMap::new();
    if let Some(map) = group.ray_start_params() {
        for (key, value) in map {
            let Some(text) = param_value(value) else {
                return refuse(format!(
                    "rayStartParams.{key} is {value}, not a string; KubeRay takes strings only"
                ));
            };
            params.insert(key.clone(), text);
        }
    }
    params
        .entry("metrics-export-port".to_owned())
        .or_insert_with(|| "8080".to_owned());
    params
        .entry("dashboard-agent-listen-port".to_owned())
        .or_insert_with(|| "52365".to_owned());
    params
        .entry("block".to_owned())
        .or_insert_with(|| "true".to_owned());
    match group.role {
        Role::Worker => {
            if !params.contains_key("address") {
                let port = params.get("port").cloned().unwrap_or_else(|| "6379".into());
                params.insert(
                    "address".to_owned(),
                    format!("{cluster_name}-head-svc:{port}"),
                );
            }
        }
        Role::Head => {
            if autoscaling {
                params
                    .entry("no-monitor".to_owned())
                    .or_insert_with(|| "true".to_owned());
            }
        }
    }
    Ok(params)
}

/// The command a group's Ray container runs, built as KubeRay v1.5.0's `BuildPod` does.
pub fn launch(
    group: &NodeGroup<'_>,
    params: &BTreeMap<String, String>,
    overwrite_annotation: bool,
) -> Launch {
    let generated = match group.role {
        Role::Head => format!("ray start --head {}", render_params(params)),
        Role::Worker => format!("ray start {}", render_params(params)),
    };
    let container = group
        .pod_spec()
        .and_then(|pod| pod.ray_container())
        .map(|c| c.value);
    let strings = |field: &str| -> Vec<String> {
        container
            .and_then(|c| c.get(field))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect()
    };
    let (command, args) = (strings("command"), strings("args"));
    // `convertCmdToString`: every item as " item ".
    let joined: String = command
        .iter()
        .chain(&args)
        .map(|item| format!(" {item} "))
        .collect();
    if overwrite_annotation || joined.contains("ray start") {
        let argv = command.into_iter().chain(args).collect();
        return Launch {
            argv,
            generated,
            own_command: true,
        };
    }
    let script = format!("ulimit -n 65536; {generated}");
    let script = if joined.is_empty() {
        script
    } else {
        format!("{joined} && {script}")
    };
    Launch {
        argv: vec!["/bin/bash".into(), "-c".into(), "--".into(), script],
        generated,
        own_command: false,
    }
}

/// The script a shell in `argv` runs, or `None` when argv runs a program directly.
pub fn shell_script(argv: &[String]) -> Result<Option<&str>, Refusal> {
    let Some(program) = argv.first() else {
        return refuse(
            "ray.io/overwrite-container-cmd makes KubeRay keep the container's own command, and it has none, so the image's entrypoint runs, which raygate cannot see; set command and args (e.g. `bash -c` with $KUBERAY_GEN_RAY_START_CMD)",
        );
    };
    let base = program.rsplit('/').next().unwrap_or(program);
    if !matches!(base, "bash" | "sh" | "dash") {
        return Ok(None);
    }
    let mut rest = argv[1..].iter();
    for word in rest.by_ref() {
        match word.as_str() {
            "-c" | "-lc" | "-cl" => break,
            "-l" | "--login" | "-e" | "-x" | "-ex" | "-xe" => continue,
            other => {
                return refuse(format!(
                    "{program} is given {other:?} before -c; run `{program} -c` with the script"
                ));
            }
        }
    }
    let mut script = rest.next();
    if script.is_some_and(|s| s == "--") {
        script = rest.next();
    }
    match script {
        Some(script) => Ok(Some(script)),
        None => refuse(format!("{program} -c is given no script")),
    }
}

/// The one `ray start` of a launch and its effective options.
pub fn effective_start(launch: &Launch) -> Result<EffectiveStart, Refusal> {
    let words = match shell_script(&launch.argv)? {
        Some(script) => {
            let commands = split_script(script, &launch.generated)?;
            the_one_ray_start(commands)?
        }
        None => {
            let mut argv = launch.argv.clone();
            strip_ray_start(&mut argv).ok_or_else(|| {
                Refusal(format!(
                    "the Ray container runs {:?}, not `ray start`, so raygate cannot tell which ports Ray uses; run `ray start` (or $KUBERAY_GEN_RAY_START_CMD) from `bash -c`",
                    launch.argv.first().map_or("", String::as_str)
                ))
            })?;
            argv
        }
    };
    parse_start(words)
}

/// Removes a leading `ray start` (or `/path/to/ray start`); `None` if it is not there.
fn strip_ray_start(words: &mut Vec<String>) -> Option<()> {
    let is_ray = words
        .first()
        .is_some_and(|w| w == "ray" || w.ends_with("/ray"));
    if !is_ray || words.get(1).map(String::as_str) != Some("start") {
        return None;
    }
    words.drain(..2);
    Some(())
}

fn the_one_ray_start(commands: Vec<Vec<String>>) -> Result<Vec<String>, Refusal> {
    let mut found: Option<Vec<String>> = None;
    for mut words in commands {
        if words.first().is_some_and(|w| w == "exec") {
            words.remove(0);
        }
        let Some(first) = words.first() else {
            continue;
        };
        let base = first.rsplit('/').next().unwrap_or(first);
        if base == "ray" {
            let sub = words.get(1).cloned().unwrap_or_default();
            if sub != "start" {
                return refuse(format!(
                    "the script runs `ray {sub}`; only one `ray start` may run in a Ray container"
                ));
            }
            if found.is_some() {
                return refuse(
                    "the script runs `ray start` more than once, so the ports of the last one are not the first one's; keep one `ray start`",
                );
            }
            strip_ray_start(&mut words);
            found = Some(words);
            continue;
        }
        if !HARMLESS_COMMANDS.contains(&base) {
            return refuse(format!(
                "the script runs {first:?}, which raygate cannot judge (it may start Ray or a listener off the plan); keep to {} and one `ray start`",
                HARMLESS_COMMANDS.join(", ")
            ));
        }
    }
    found.ok_or_else(|| {
        Refusal(
            "the script never runs `ray start` (as bash reads it), so raygate cannot tell which ports Ray uses; run `ray start` or $KUBERAY_GEN_RAY_START_CMD"
                .to_owned(),
        )
    })
}

/// Splits a script into simple commands of words, as bash would after expansion, for the
/// subset raygate can follow exactly: words, single and double quotes, backslashes, comments,
/// `;`, `&&` and newlines, `$KUBERAY_GEN_RAY_START_CMD` (`generated`) and KubeRay's own
/// `${RAY_START_ULIMIT_OPEN_FILES:-65536}`. Anything else is refused.
pub fn split_script(script: &str, generated: &str) -> Result<Vec<Vec<String>>, Refusal> {
    let mut lexer = Lexer {
        chars: script.chars().collect(),
        at: 0,
        generated,
    };
    let mut commands = vec![Vec::new()];
    while let Some(token) = lexer.next_token()? {
        match token {
            // `;` or `&&` with no command before it is a syntax error: bash runs nothing.
            Token::Separator(operator)
                if operator != "\n" && commands.last().is_some_and(Vec::is_empty) =>
            {
                return refuse(format!(
                    "the script has `{operator}` with no command before it, a syntax error, so bash runs nothing (an empty command or args item does this)"
                ));
            }
            Token::Separator(_) => commands.push(Vec::new()),
            Token::Words(words) => commands.last_mut().map_or((), |c| c.extend(words)),
        }
    }
    for command in &commands {
        if let Some(first) = command.first()
            && let Some((name, _)) = first.split_once('=')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return refuse(format!(
                "the script sets {name} before a command, which can change how Ray starts; set environment variables under env"
            ));
        }
    }
    Ok(commands.into_iter().filter(|c| !c.is_empty()).collect())
}

enum Token {
    /// `;`, `&&` or a newline.
    Separator(&'static str),
    /// One shell word, or the words an unquoted expansion splits into.
    Words(Vec<String>),
}

struct Lexer<'s> {
    chars: Vec<char>,
    at: usize,
    generated: &'s str,
}

/// Characters bash treats specially outside quotes that this subset does not follow.
const UNSUPPORTED: &[(char, &str)] = &[
    ('|', "a pipe or `||`"),
    ('&', "a background job"),
    ('(', "a subshell"),
    (')', "a subshell"),
    ('<', "a redirection"),
    ('>', "a redirection"),
    ('`', "command substitution"),
    ('*', "a glob"),
    ('?', "a glob"),
    ('[', "a glob"),
    ('{', "brace expansion"),
    ('}', "brace expansion"),
    ('~', "tilde expansion"),
    ('!', "history or negation"),
];

impl Lexer<'_> {
    fn peek(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn next_token(&mut self) -> Result<Option<Token>, Refusal> {
        // Blanks, comments and line continuations between words.
        loop {
            match self.peek(0) {
                Some(' ' | '\t') => self.at += 1,
                Some('\\') if self.peek(1) == Some('\n') => self.at += 2,
                Some('#') => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
        let Some(c) = self.peek(0) else {
            return Ok(None);
        };
        match c {
            ';' | '\n' => {
                self.at += 1;
                if c == ';' && self.peek(0) == Some(';') {
                    return refuse("the script has `;;`, which bash reads only in `case`");
                }
                Ok(Some(Token::Separator(if c == ';' { ";" } else { "\n" })))
            }
            '&' if self.peek(1) == Some('&') => {
                self.at += 2;
                Ok(Some(Token::Separator("&&")))
            }
            _ => self.word().map(Some),
        }
    }

    /// One word up to an unquoted blank or operator.
    fn word(&mut self) -> Result<Token, Refusal> {
        let mut text = String::new();
        let mut quoted = false;
        // An unquoted `$KUBERAY_GEN_RAY_START_CMD` alone in its word is split into words.
        let mut split: Option<Vec<String>> = None;
        while let Some(c) = self.peek(0) {
            match c {
                ' ' | '\t' | '\n' | ';' => break,
                '&' if self.peek(1) == Some('&') => break,
                '\\' => {
                    match self.peek(1) {
                        Some('\n') => {}
                        Some(next) => {
                            text.push(next);
                            quoted = true;
                        }
                        None => return refuse("the script ends with a lone backslash"),
                    }
                    self.at += 2;
                }
                '\'' => {
                    self.at += 1;
                    loop {
                        match self.peek(0) {
                            Some('\'') => break,
                            Some(c) => text.push(c),
                            None => return refuse("the script has an unclosed single quote"),
                        }
                        self.at += 1;
                    }
                    self.at += 1;
                    quoted = true;
                }
                '"' => {
                    self.at += 1;
                    self.double_quoted(&mut text)?;
                    quoted = true;
                }
                '$' => {
                    let (value, end) = self.expansion(self.at, false)?;
                    self.at = end;
                    if text.is_empty() && !quoted && self.at_word_end() {
                        split = Some(split_expansion(&value)?);
                    } else {
                        return refuse(
                            "the script joins a variable with other text in one word; raygate follows $KUBERAY_GEN_RAY_START_CMD only as a word of its own",
                        );
                    }
                }
                '#' if text.is_empty() && !quoted => break,
                _ => {
                    if let Some((_, what)) = UNSUPPORTED.iter().find(|(u, _)| *u == c) {
                        return refuse(format!(
                            "the script uses {c:?} ({what}), which raygate does not follow; write plain words"
                        ));
                    }
                    text.push(c);
                    self.at += 1;
                }
            }
        }
        match split {
            Some(words) => Ok(Token::Words(words)),
            None => Ok(Token::Words(vec![text])),
        }
    }

    fn at_word_end(&self) -> bool {
        self.peek(0)
            .is_none_or(|c| matches!(c, ' ' | '\t' | '\n' | ';'))
            || (self.peek(0) == Some('&') && self.peek(1) == Some('&'))
    }

    fn double_quoted(&mut self, text: &mut String) -> Result<(), Refusal> {
        loop {
            match self.peek(0) {
                None => return refuse("the script has an unclosed double quote"),
                Some('"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some('\\') => {
                    match self.peek(1) {
                        Some(c @ ('$' | '`' | '"' | '\\')) => text.push(c),
                        Some('\n') => {}
                        Some(c) => {
                            text.push('\\');
                            text.push(c);
                        }
                        None => return refuse("the script has an unclosed double quote"),
                    }
                    self.at += 2;
                }
                Some('$') => match self.quoted_variable() {
                    // Inside double quotes a variable stays one word whatever its value: it
                    // is kept as written (`$NAME`), which no number or JSON option accepts.
                    Some((name, end)) => {
                        text.push('$');
                        text.push_str(&name);
                        self.at = end;
                    }
                    None => {
                        let (value, end) = self.expansion(self.at, true)?;
                        text.push_str(&value);
                        self.at = end;
                    }
                },
                Some('`') => {
                    return refuse(
                        "the script uses command substitution, which raygate does not follow",
                    );
                }
                Some(c) => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// A plain `$NAME` or `${NAME}` at the cursor (not KubeRay's generated command), and where
    /// it ends.
    fn quoted_variable(&self) -> Option<(String, usize)> {
        let braced = self.peek(1) == Some('{');
        let from = self.at + if braced { 2 } else { 1 };
        let name: String = self.chars[from..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect();
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || name == GENERATED_CMD_VAR
        {
            return None;
        }
        let mut end = from + name.chars().count();
        if braced {
            if self.chars.get(end) != Some(&'}') {
                return None;
            }
            end += 1;
        }
        Some((name, end))
    }

    /// The value of the expansion at `start` and where it ends. Only KubeRay's two variables
    /// are known; `${RAY_START_ULIMIT_OPEN_FILES:-65536}` stands for its default.
    fn expansion(&self, start: usize, in_quotes: bool) -> Result<(String, usize), Refusal> {
        let rest: String = self.chars[start..].iter().collect();
        for (form, value) in [
            (
                format!("${{{ULIMIT_VAR}:-65536}}"),
                "${RAY_START_ULIMIT_OPEN_FILES}",
            ),
            (format!("${{{GENERATED_CMD_VAR}}}"), self.generated),
            (format!("${GENERATED_CMD_VAR}"), self.generated),
        ] {
            if let Some(after) = rest.strip_prefix(form.as_str()) {
                // `$KUBERAY_GEN_RAY_START_CMDX` names another variable.
                if form.ends_with(GENERATED_CMD_VAR)
                    && after
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    break;
                }
                if in_quotes && value == self.generated {
                    return refuse(
                        "the script quotes \"$KUBERAY_GEN_RAY_START_CMD\", so bash runs it as one word and Ray never starts; leave it unquoted",
                    );
                }
                return Ok((value.to_owned(), start + form.chars().count()));
            }
        }
        let name: String = rest
            .chars()
            .skip(1)
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '{' | '(' | '$'))
            .take(40)
            .collect();
        refuse(format!(
            "the script expands ${name}, whose value raygate cannot know at admission; write the flags out, or run $KUBERAY_GEN_RAY_START_CMD"
        ))
    }
}

/// An unquoted expansion's words: split on blanks, quotes kept as they are (bash does not
/// remove quotes from an expansion), globs refused.
fn split_expansion(value: &str) -> Result<Vec<String>, Refusal> {
    if value.starts_with("${") {
        // The ulimit argument: one word whatever its value, and harmless.
        return Ok(vec![value.to_owned()]);
    }
    if let Some(c) = value.chars().find(|c| matches!(c, '*' | '?' | '[')) {
        return refuse(format!(
            "$KUBERAY_GEN_RAY_START_CMD holds {c:?}, which bash would expand as a glob; remove it from rayStartParams"
        ));
    }
    Ok(value
        .split([' ', '\t', '\n'])
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Parses the words after `ray start` as click 8 does: long options by their exact name (no
/// abbreviations), `--key=value` or `--key value`, the last repeated value wins, `-v` counts,
/// and any positional word or unknown option makes Ray exit.
pub fn parse_start(words: Vec<String>) -> Result<EffectiveStart, Refusal> {
    let mut options: BTreeMap<&'static str, OptionValue> = BTreeMap::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if word == "--" {
            if i < words.len() {
                return refuse(format!(
                    "`ray start` is given {:?} after `--`; Ray exits (\"Got unexpected extra argument\")",
                    words[i]
                ));
            }
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let Some((key, arity)) = RAY_START_OPTIONS.iter().find(|(n, _)| *n == name) else {
                return refuse(format!(
                    "`ray start` has no option --{name}; Ray exits (\"No such option\")"
                ));
            };
            match (arity, inline) {
                (Arity::Flag | Arity::Count, Some(_)) => {
                    return refuse(format!(
                        "--{name} takes no value in `ray start`, so Ray exits; write it as a bare flag"
                    ));
                }
                (Arity::Flag, None) => {
                    options.insert(key, OptionValue::Flag);
                }
                (Arity::Count, None) => count(&mut options, key, 1),
                (Arity::Value(kind), inline) => {
                    let value = match inline {
                        Some(v) => v.to_owned(),
                        None => {
                            let Some(next) = words.get(i) else {
                                return refuse(format!(
                                    "--{name} is the last word of `ray start` and has no value; Ray exits"
                                ));
                            };
                            i += 1;
                            next.clone()
                        }
                    };
                    let value = convert(name, *kind, value)?;
                    options.insert(key, OptionValue::Text(value));
                }
            }
            continue;
        }
        if let Some(short) = word.strip_prefix('-')
            && !short.is_empty()
        {
            if short.chars().all(|c| c == 'v') {
                count(&mut options, "verbose", short.len() as u32);
                continue;
            }
            return refuse(format!(
                "`ray start` has no short option {word}; Ray exits (\"No such option\")"
            ));
        }
        return refuse(format!(
            "`ray start` is given the extra word {word:?}; Ray exits (\"Got unexpected extra argument\")"
        ));
    }
    Ok(EffectiveStart { words, options })
}

/// Whether click accepts `value` for the option `name`, as raygate reads it (KubeRay's
/// `"true"`/`"false"` for flags and boolean-valued options included).
pub fn option_value(name: &str, value: String) -> Result<(), Refusal> {
    match option(name) {
        Some(Arity::Value(kind)) => {
            let lower = value.to_ascii_lowercase();
            if (lower == "true" || lower == "false") && !KEEPS_BOOLEAN_TEXT.contains(&name) {
                return refuse(format!(
                    "KubeRay turns {value:?} into a bare --{name} (or drops it), but --{name} takes a value, so Ray reads the next flag as its value; write a value"
                ));
            }
            convert(name, kind, value).map(drop)
        }
        Some(Arity::Flag | Arity::Count) => {
            let lower = value.to_ascii_lowercase();
            if lower == "true" || lower == "false" {
                Ok(())
            } else {
                refuse(format!(
                    "--{name} is a flag; write \"true\" (or remove it), as KubeRay renders other values as --{name}=VALUE, which Ray refuses"
                ))
            }
        }
        None => refuse(format!("`ray start` has no option --{name}")),
    }
}

fn count(options: &mut BTreeMap<&'static str, OptionValue>, key: &'static str, by: u32) {
    let now = match options.get(key) {
        Some(OptionValue::Count(n)) => *n,
        _ => 0,
    };
    options.insert(key, OptionValue::Count(now.saturating_add(by)));
}

/// A value as raygate accepts it for click's type: stricter than click where click's own
/// reading is loose (an integer is ASCII digits only, not `+6380`, ` 6380` or `6_380`).
fn convert(name: &str, kind: ValueType, value: String) -> Result<String, Refusal> {
    match kind {
        ValueType::Int => {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 18 {
                return refuse(format!(
                    "--{name}={value:?} is not a plain decimal number; write digits only"
                ));
            }
            Ok(value.trim_start_matches('0').to_owned())
                .map(|v| if v.is_empty() { "0".to_owned() } else { v })
        }
        ValueType::Float => match value.parse::<f64>() {
            Ok(f) if f.is_finite() && value.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                Ok(value)
            }
            _ => refuse(format!("--{name}={value:?} is not a plain decimal number")),
        },
        ValueType::Bool => match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "t" | "yes" | "y" | "on" => Ok("true".to_owned()),
            "0" | "false" | "f" | "no" | "n" | "off" => Ok("false".to_owned()),
            _ => refuse(format!(
                "--{name}={value:?} is not a boolean; Ray exits (write true or false)"
            )),
        },
        ValueType::Choice(choices) => {
            if choices.contains(&value.as_str()) {
                Ok(value)
            } else {
                refuse(format!(
                    "--{name}={value:?} is not one of {}; Ray exits",
                    choices.join(", ")
                ))
            }
        }
        ValueType::Json if value.contains('$') => refuse(format!(
            "--{name} holds a variable, whose value raygate cannot know; write the JSON out"
        )),
        ValueType::Json => match serde_json::from_str::<Value>(&value) {
            Ok(_) => Ok(value),
            Err(_) => refuse(format!("--{name} is not JSON; Ray exits")),
        },
        ValueType::Text => Ok(value),
    }
}

/// The single word a `rayStartParams` value becomes in KubeRay's `bash -c` line, after quote
/// removal, or why it is not one plain word. A value bash would split, expand or end the
/// command at is refused: it could add flags (click keeps the last) or run commands.
pub fn param_word(key: &str, value: &str) -> Result<String, Refusal> {
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return refuse(format!(
            "rayStartParams key {key:?} is not a `ray start` option name (lowercase letters, digits and '-'); KubeRay writes it unquoted into bash"
        ));
    }
    let rendered = format!("--{key}={value}");
    let mut lexer = Lexer {
        chars: rendered.chars().collect(),
        at: 0,
        generated: "",
    };
    let first = lexer.next_token();
    // The whole value must be one word: a blank or a `#` after it would end the flag, and a
    // comment would swallow every flag KubeRay writes after it.
    let whole = lexer.at == lexer.chars.len();
    let second = lexer.next_token();
    let single = match (first, second) {
        (Ok(Some(Token::Words(words))), Ok(None)) if words.len() == 1 && whole => {
            words.into_iter().next()
        }
        (Err(r), _) | (_, Err(r)) => {
            let quote = if value.contains('$') {
                format!(" (to pass a variable, quote it: '\"{value}\"')")
            } else {
                String::new()
            };
            return refuse(format!(
                "rayStartParams.{key} value {value:?} reaches KubeRay's `bash -c` line unquoted: {}{quote}",
                r.0.trim_start_matches("the script ")
            ));
        }
        _ => None,
    };
    match single {
        Some(word) => Ok(word
            .strip_prefix(&format!("--{key}="))
            .unwrap_or_default()
            .to_owned()),
        None => {
            let commands = split_script(&rendered, "").unwrap_or_default();
            let words = commands.iter().map(Vec::len).sum::<usize>();
            refuse(format!(
                "rayStartParams.{key} value {value:?} becomes {words} words (or commands) in KubeRay's unquoted `bash -c` line, so Ray reads other flags than the one written; write one plain word without spaces, quotes or ; & | $"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_last_repeated_option_wins_as_in_click() {
        let start = parse_start(words("--head --port=6380 --port 6379")).unwrap();
        assert_eq!(start.get("port"), Some("6379"));
        assert_eq!(start.options.get("head"), Some(&OptionValue::Flag));
    }

    #[test]
    fn a_value_split_by_bash_is_refused() {
        assert!(param_word("temp-dir", "/tmp/ray --port=6379").is_err());
        assert!(param_word("port", " 6380").is_err());
        assert!(param_word("port", "$(echo 6379)").is_err());
        assert_eq!(
            param_word("resources", "\"{\\\"CPU\\\": 2}\"").unwrap(),
            "{\"CPU\": 2}"
        );
        assert_eq!(param_word("port", "6380").unwrap(), "6380");
    }

    #[test]
    fn scripts_reduce_to_one_ray_start_or_are_refused() {
        let generated = "ray start --head --port=6380";
        let one = |s: &str| {
            split_script(s, generated)
                .and_then(the_one_ray_start)
                .map(|w| w.join(" "))
        };
        assert_eq!(
            one("ulimit -n 65536; echo head; $KUBERAY_GEN_RAY_START_CMD").unwrap(),
            "--head --port=6380"
        );
        assert_eq!(one("ray  start --port=6379").unwrap(), "--port=6379");
        assert!(one("ray stop; ray start --port=6379").is_err());
        assert!(one("RAY_CMD='ray start'; $RAY_CMD").is_err());
        assert!(one("python -m ray.scripts.scripts start --head").is_err());
        assert_eq!(
            one("# runs $KUBERAY_GEN_RAY_START_CMD later\nray start --port=6379").unwrap(),
            "--port=6379"
        );
        assert!(one("\"$KUBERAY_GEN_RAY_START_CMD\"").is_err());
        assert_eq!(
            one("exec \"ray\" 'start' \"--port=6380\"").unwrap(),
            "--port=6380"
        );
    }

    #[test]
    fn a_comment_or_a_leading_operator_is_refused() {
        assert!(param_word("port", "6380 #--port=6379").is_err());
        // Mid-word, `#` is a plain character: one word, which no port accepts.
        let word = param_word("port", "6380#x").unwrap();
        assert!(option_value("port", word).is_err());
        assert!(split_script("   && ulimit -n 65536; ray start --head", "").is_err());
        assert!(split_script("echo a;; ray start", "").is_err());
    }

    #[test]
    fn unknown_options_and_extra_words_make_ray_exit() {
        assert!(parse_start(words("--dashboard-grpc-port=1")).is_err());
        assert!(parse_start(words("--head=true")).is_err());
        assert!(parse_start(words("--port=6380 extra")).is_err());
        assert!(parse_start(words("--port=+6380")).is_err());
        assert_eq!(
            parse_start(words("-vv -v")).unwrap().options.get("verbose"),
            Some(&OptionValue::Count(3))
        );
    }
}
