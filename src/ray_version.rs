//! Which Ray a group runs, and what that Ray does: facts measured per Ray version by
//! `tests/runtime/matrix.sh` (each version's own `ray start` click command, its listeners and
//! defaults), kept in `policies/ray-versions.json` and compiled in.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

/// A Ray release, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RayVersion(pub u32, pub u32, pub u32);

impl fmt::Display for RayVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl<'de> Deserialize<'de> for RayVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RayVersion, D::Error> {
        let text = String::deserialize(d)?;
        parse_version(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a Ray version X.Y.Z")))
    }
}

impl serde::Serialize for RayVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `X.Y.Z` at the start of `text`, followed by nothing, `-` (`2.52.0-py311-gpu`) or `.`
/// (a nightly's commit).
pub fn parse_version(text: &str) -> Option<RayVersion> {
    let mut numbers = [0u32; 3];
    let mut rest = text.trim();
    for (i, number) in numbers.iter_mut().enumerate() {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        *number = rest[..end].parse().ok()?;
        rest = &rest[end..];
        if i < 2 {
            rest = rest.strip_prefix('.')?;
        }
    }
    match rest.chars().next() {
        None | Some('-') | Some('.') => Some(RayVersion(numbers[0], numbers[1], numbers[2])),
        _ => None,
    }
}

/// The tag of a `rayproject/ray` or `rayproject/ray-ml` image (any registry or mirror path);
/// `None` for any other image, or one without a tag.
pub fn ray_image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next().unwrap_or(image);
    let (repository, tag) = image.rsplit_once(':')?;
    // A colon before the last slash is a registry's port, not a tag.
    if tag.contains('/') {
        return None;
    }
    let repository = repository.strip_prefix("docker.io/").unwrap_or(repository);
    let path = repository
        .split_once('/')
        .filter(|(first, _)| first.contains('.') || first.contains(':') || *first == "localhost")
        .map_or(repository, |(_, rest)| rest);
    let known = ["rayproject/ray", "rayproject/ray-ml"]
        .into_iter()
        .any(|name| path == name || path.strip_suffix(name).is_some_and(|p| p.ends_with('/')));
    known.then_some(tag)
}

/// The Ray version of a `rayproject/ray` or `rayproject/ray-ml` image from its tag; `None`
/// for any other image or tag (`latest`, `nightly`, a digest alone).
pub fn image_version(image: &str) -> Option<RayVersion> {
    ray_image_tag(image).and_then(parse_version)
}

/// How click reads one option of `ray start`.
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
    Choice(&'static [String]),
}

/// A listener Ray opens on a random port unless a `ray start` option pins it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RandomListener {
    pub ray_start_param: String,
    pub node: Nodes,
    pub what: String,
}

/// Which nodes open a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nodes {
    Head,
    Every,
}

/// A fixed port only the head listens on, which no `ray start` option moves.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeadOnlyListener {
    pub port: u16,
    pub what: String,
}

/// A port range of the facts (`policy::PortRange` is the plan's).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub from: u16,
    pub to: u16,
}

/// How click types an option, as the facts file names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OptionType {
    Named(NamedType),
    Choice { choice: Vec<String> },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum NamedType {
    Flag,
    Count,
    Int,
    Float,
    Bool,
    Json,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VersionRecord {
    version: RayVersion,
    measured: String,
    start_options: std::collections::BTreeMap<String, OptionType>,
    worker_ports: Range,
    serve_http_port: u32,
    serve_grpc_port: u32,
    random_listeners: Vec<RandomListener>,
    head_only_listeners: Vec<HeadOnlyListener>,
    kuberay_autoscaler_options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FactsFile {
    #[allow(dead_code)]
    about: String,
    versions: Vec<VersionRecord>,
}

/// What one measured Ray version does.
#[derive(Debug)]
pub struct VersionFacts {
    pub version: RayVersion,
    /// When and how it was measured.
    pub measured: String,
    /// `ray start`'s long options, sorted by name.
    options: Vec<(String, OptionType)>,
    /// Where each option is in `options`: looked up for every word of every `ray start`.
    option_index: HashMap<String, usize, foldhash::fast::FixedState>,
    /// The worker-process range when min/max-worker-port are unset.
    pub worker_ports: Range,
    /// Serve's HTTP and gRPC ports when its config leaves them unset.
    pub serve_http_port: u32,
    pub serve_grpc_port: u32,
    pub random_listeners: Vec<RandomListener>,
    pub head_only_listeners: Vec<HeadOnlyListener>,
    /// The long options of `ray kuberay-autoscaler`, which KubeRay's autoscaler container runs.
    pub kuberay_autoscaler_options: Vec<String>,
}

impl VersionFacts {
    /// How click reads `--name` in this version; `None` when `ray start` has no such option.
    pub fn option(&'static self, name: &str) -> Option<(&'static str, Arity)> {
        let (name, kind) = &self.options[*self.option_index.get(name)?];
        let arity = match kind {
            OptionType::Choice { choice } => Arity::Value(ValueType::Choice(choice)),
            OptionType::Named(NamedType::Flag) => Arity::Flag,
            OptionType::Named(NamedType::Count) => Arity::Count,
            OptionType::Named(NamedType::Int) => Arity::Value(ValueType::Int),
            OptionType::Named(NamedType::Float) => Arity::Value(ValueType::Float),
            OptionType::Named(NamedType::Bool) => Arity::Value(ValueType::Bool),
            OptionType::Named(NamedType::Json) => Arity::Value(ValueType::Json),
            OptionType::Named(NamedType::Text) => Arity::Value(ValueType::Text),
        };
        Some((name.as_str(), arity))
    }

    pub fn has_option(&self, name: &str) -> bool {
        self.option_index.contains_key(name)
    }

    pub fn options(&self) -> impl Iterator<Item = &str> {
        self.options.iter().map(|(n, _)| n.as_str())
    }

    /// The listener `--param` pins, if this version opens it on a random port when unset.
    pub fn random_listener(&self, param: &str) -> Option<&RandomListener> {
        self.random_listeners
            .iter()
            .find(|l| l.ray_start_param == param)
    }
}

/// Whether a plan's pin by `--param` applies to a node of one Ray version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// The node opens the listener, and `ray start` takes the option.
    Applies,
    /// This Ray does not open the listener on this node (a measured Ray that opens it on a
    /// random port does not, or opens it on the head only): nothing to pin.
    NotOpened,
    /// This Ray's `ray start` has no such option: the port cannot be set. The first measured
    /// Ray that can, if any is newer.
    CannotSet(Option<RayVersion>),
}

impl VersionFacts {
    /// Whether pinning `--param` applies to a node (`head` or not) of this Ray.
    pub fn pin(&self, param: &str, head: bool) -> Pin {
        let facts = RayFacts::get();
        if !self.has_option(param) {
            return match facts.span_of(param) {
                Some((first, _)) if first > self.version => Pin::CannotSet(Some(first)),
                // Retired with its listener (measured: e.g. --dashboard-grpc-port after 2.46).
                Some(_) => Pin::NotOpened,
                None => Pin::CannotSet(None),
            };
        }
        let random_somewhere = facts
            .random_somewhere
            .binary_search_by(|p| p.as_str().cmp(param))
            .is_ok();
        match self.random_listener(param) {
            Some(l) if l.node == Nodes::Head && !head => Pin::NotOpened,
            Some(_) => Pin::Applies,
            None if random_somewhere => Pin::NotOpened,
            None => Pin::Applies,
        }
    }
}

/// Every measured version, oldest first.
pub struct RayFacts {
    versions: Vec<VersionFacts>,
    /// The options that pin a random listener in some measured Ray, sorted.
    random_somewhere: Vec<String>,
}

const FACTS_JSON: &str = include_str!("../policies/ray-versions.json");

static FACTS: LazyLock<RayFacts> = LazyLock::new(|| match RayFacts::parse(FACTS_JSON) {
    Ok(facts) => facts,
    // Compiled in and checked by a unit test, so this cannot fail in a built binary.
    Err(why) => unreachable!("policies/ray-versions.json: {why}"),
});

impl RayFacts {
    fn parse(text: &str) -> Result<RayFacts, String> {
        let file: FactsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut versions: Vec<VersionFacts> = file
            .versions
            .into_iter()
            .map(|mut r| {
                let options: Vec<(String, OptionType)> =
                    std::mem::take(&mut r.start_options).into_iter().collect();
                let option_index = options
                    .iter()
                    .enumerate()
                    .map(|(i, (name, _))| (name.clone(), i))
                    .collect();
                (r, options, option_index)
            })
            .map(|(r, options, option_index)| VersionFacts {
                version: r.version,
                measured: r.measured,
                options,
                option_index,
                worker_ports: r.worker_ports,
                serve_http_port: r.serve_http_port,
                serve_grpc_port: r.serve_grpc_port,
                random_listeners: r.random_listeners,
                head_only_listeners: r.head_only_listeners,
                kuberay_autoscaler_options: r.kuberay_autoscaler_options,
            })
            .collect();
        if versions.is_empty() {
            return Err("no versions".into());
        }
        versions.sort_by_key(|v| v.version);
        let mut random_somewhere: Vec<String> = versions
            .iter()
            .flat_map(|v| v.random_listeners.iter().map(|l| l.ray_start_param.clone()))
            .collect();
        random_somewhere.sort();
        random_somewhere.dedup();
        Ok(RayFacts {
            versions,
            random_somewhere,
        })
    }

    pub fn get() -> &'static RayFacts {
        &FACTS
    }

    pub fn versions(&self) -> &[VersionFacts] {
        &self.versions
    }

    pub fn newest(&self) -> &VersionFacts {
        &self.versions[self.versions.len() - 1]
    }

    pub fn oldest(&self) -> &VersionFacts {
        &self.versions[0]
    }

    /// The facts that hold for `version`: the measured release of its minor version, else the
    /// newest measured one before it; the oldest for an older Ray.
    pub fn for_version(&self, version: RayVersion) -> (&VersionFacts, Fit) {
        let same_minor = |v: &VersionFacts| (v.version.0, v.version.1) == (version.0, version.1);
        if let Some(facts) = self.versions.iter().rev().find(|v| same_minor(v)) {
            return (facts, Fit::Measured);
        }
        if version > self.newest().version {
            return (self.newest(), Fit::Newer);
        }
        match self.versions.iter().rev().find(|v| v.version < version) {
            Some(facts) => (facts, Fit::Between),
            None => (self.oldest(), Fit::Older),
        }
    }

    /// The first measured version whose `ray kuberay-autoscaler` takes `--option`.
    pub fn first_autoscaler_with(&self, option: &str) -> Option<RayVersion> {
        self.versions
            .iter()
            .find(|v| v.kuberay_autoscaler_options.iter().any(|o| o == option))
            .map(|v| v.version)
    }

    /// The first measured version whose `ray start` has `--option`, and the last one.
    pub fn span_of(&self, option: &str) -> Option<(RayVersion, RayVersion)> {
        let mut having = self.versions.iter().filter(|v| v.has_option(option));
        let first = having.next()?.version;
        Some((first, having.next_back().map_or(first, |v| v.version)))
    }
}

/// How a group's Ray relates to the measured versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// A measured minor version.
    Measured,
    /// Between two measured ones: judged by the older.
    Between,
    /// Newer than every measured one: judged by the newest.
    Newer,
    /// Older than every measured one: judged by the oldest.
    Older,
    /// No version could be read: judged by the newest.
    Unknown,
}

/// Where raygate read a group's Ray version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// The Ray container's `rayproject/ray` image tag: what runs.
    Image(&'a str),
    /// The cluster's `spec.rayVersion`.
    RayVersion(&'a str),
    /// The policy's `spec.defaultRayVersion`.
    PolicyDefault,
    /// A Ray image whose tag is no version (`nightly`, `latest`).
    UnversionedImage(&'a str),
}

/// The Ray a group or Pod runs, and the facts raygate judges it by.
#[derive(Debug, Clone, Copy)]
pub struct RayOf<'a> {
    pub version: RayVersion,
    pub source: Source<'a>,
    pub facts: &'static VersionFacts,
    pub fit: Fit,
}

impl<'a> RayOf<'a> {
    /// The Ray of a container running `image` in a cluster whose `spec.rayVersion` is
    /// `ray_version`: the image's tag when it is a Ray image with a version (what runs;
    /// KubeRay does not check `rayVersion` against it), else `rayVersion`, else the policy's
    /// default. A Ray image with no version in its tag and no `rayVersion` is judged by the
    /// newest measured Ray.
    pub fn resolve(
        image: Option<&'a str>,
        ray_version: Option<&'a str>,
        default: RayVersion,
    ) -> RayOf<'a> {
        let facts = RayFacts::get();
        // A Ray image: its tag's version, or none (`nightly`).
        let tagged = image.and_then(|i| ray_image_tag(i).map(|tag| (i, parse_version(tag))));
        let declared = ray_version.and_then(|t| parse_version(t).map(|v| (t, v)));
        let (version, source) = match (tagged, declared) {
            (Some((image, Some(version))), _) => (version, Source::Image(image)),
            (_, Some((text, version))) => (version, Source::RayVersion(text)),
            (Some((image, None)), None) => {
                (facts.newest().version, Source::UnversionedImage(image))
            }
            (None, None) => (default, Source::PolicyDefault),
        };
        let (facts, fit) = facts.for_version(version);
        let fit = if matches!(source, Source::UnversionedImage(_)) {
            Fit::Unknown
        } else {
            fit
        };
        RayOf {
            version,
            source,
            facts,
            fit,
        }
    }

    /// The Ray of a group's Ray container (container 0).
    pub fn of_group(
        group_spec: &'a Value,
        ray_version: Option<&'a str>,
        default: RayVersion,
    ) -> RayOf<'a> {
        let image = group_spec
            .pointer("/template/spec/containers/0/image")
            .and_then(Value::as_str);
        RayOf::resolve(image, ray_version, default)
    }

    /// The Ray of a Pod's Ray container (container 0); a Pod carries no `rayVersion`.
    pub fn of_pod(pod_spec: &'a Value, default: RayVersion) -> RayOf<'a> {
        let image = pod_spec
            .pointer("/containers/0/image")
            .and_then(Value::as_str);
        RayOf::resolve(image, None, default)
    }

    /// "Ray 2.9.3 (image tag)": the version, where it was read, and the measured release it
    /// is judged by when that is another.
    pub fn name(&self) -> String {
        let source = match self.source {
            Source::Image(_) => "image tag",
            Source::RayVersion(_) => "rayVersion",
            Source::PolicyDefault => "the policy's default",
            Source::UnversionedImage(_) => "no version in the image tag",
        };
        if self.facts.version == self.version {
            format!("Ray {} ({source})", self.version)
        } else {
            format!(
                "Ray {} ({source}; by {}'s measurement)",
                self.version, self.facts.version
            )
        }
    }

    /// Where the version was read, for a finding.
    pub fn source_text(&self) -> String {
        match self.source {
            Source::Image(image) => format!("from the image {image}"),
            Source::RayVersion(text) => format!("from rayVersion {text:?}"),
            Source::PolicyDefault => "the policy's defaultRayVersion".to_owned(),
            Source::UnversionedImage(image) => {
                format!("the image {image} names no version")
            }
        }
    }

    /// Whether raygate should warn that it judges this Ray by facts measured on another.
    pub fn unmeasured(&self) -> bool {
        matches!(self.fit, Fit::Newer | Fit::Older | Fit::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> RayVersion {
        parse_version(text).unwrap()
    }

    #[test]
    fn the_compiled_in_facts_parse_and_are_ordered() {
        let facts = RayFacts::parse(FACTS_JSON).unwrap();
        assert!(facts.versions().len() >= 8);
        assert!(
            facts
                .versions()
                .windows(2)
                .all(|w| w[0].version < w[1].version)
        );
        for version in facts.versions() {
            // Every option raygate reads by name is one click lists in every version.
            for name in ["port", "head", "address", "block", "min-worker-port"] {
                assert!(
                    version.has_option(name),
                    "{} lacks --{name}",
                    version.version
                );
            }
        }
    }

    #[test]
    fn a_version_is_judged_by_its_minor_release_else_the_one_before() {
        let facts = RayFacts::get();
        let (f, fit) = facts.for_version(v("2.9.0"));
        assert_eq!((f.version, fit), (v("2.9.3"), Fit::Measured));
        let (f, fit) = facts.for_version(v("2.56.0"));
        assert_eq!((f.version, fit), (v("2.52.1"), Fit::Between));
        let (f, fit) = facts.for_version(v("2.70.0"));
        assert_eq!((f.version, fit), (facts.newest().version, Fit::Newer));
        let (f, fit) = facts.for_version(v("2.5.1"));
        assert_eq!((f.version, fit), (facts.oldest().version, Fit::Older));
    }

    #[test]
    fn the_image_tag_goes_first_then_ray_version_then_the_default() {
        let default = v("2.60.0");
        let ray = RayOf::resolve(Some("rayproject/ray:2.9.3-py310"), Some("2.60.0"), default);
        assert_eq!(
            (ray.version, ray.source),
            (v("2.9.3"), Source::Image("rayproject/ray:2.9.3-py310"))
        );
        let ray = RayOf::resolve(
            Some("example.com/team/ray-app:1.2.3"),
            Some("2.30.0"),
            default,
        );
        assert_eq!(
            (ray.version, ray.source),
            (v("2.30.0"), Source::RayVersion("2.30.0"))
        );
        let ray = RayOf::resolve(Some("example.com/team/ray-app:1.2.3"), None, default);
        assert_eq!((ray.version, ray.source), (default, Source::PolicyDefault));
        let ray = RayOf::resolve(Some("rayproject/ray:nightly"), None, v("2.41.0"));
        assert_eq!(ray.fit, Fit::Unknown);
        assert_eq!(ray.facts.version, RayFacts::get().newest().version);
        let ray = RayOf::resolve(Some("rayproject/ray:nightly"), Some("2.41.0"), default);
        assert_eq!((ray.version, ray.fit), (v("2.41.0"), Fit::Measured));
    }

    #[test]
    fn versions_read_from_tags_and_text() {
        assert_eq!(
            image_version("rayproject/ray:2.52.0-py311-gpu"),
            Some(v("2.52.0"))
        );
        assert_eq!(
            image_version("rayproject/ray-ml:2.46.0.0e19ea-py39"),
            Some(v("2.46.0"))
        );
        assert_eq!(
            image_version("localhost:5000/rayproject/ray:2.9.3"),
            Some(v("2.9.3"))
        );
        assert_eq!(image_version("rayproject/ray"), None);
        assert_eq!(image_version("rayproject/ray:nightly"), None);
        assert_eq!(image_version("example.com/ray-app:2.9.3"), None);
        assert_eq!(parse_version("2.9"), None);
        assert_eq!(parse_version("2.9.3x"), None);
    }
}
