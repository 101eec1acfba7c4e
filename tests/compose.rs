//! The container deployment agrees with the local one: `deploy/docker-compose.yml`,
//! `deploy/haproxy.cfg` and the `Dockerfile` use the topology, names, ports, hub settings and
//! HAProxy options of `deploy/cluster`, and only settings the hub knows, so that a name or port
//! changed in one file and not in the others fails here.
//!
//! No image is built or run (this machine has no Docker engine): the files are read as text. The
//! compose file is parsed by a small reader of the YAML subset it uses, which refuses anything
//! else (a construct it does not understand cannot hide a drift); `haproxy -c` checks the HAProxy
//! file when HAProxy is installed. Run alone with `cargo test --test compose`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use yaml::Node;

/// The repository's files this test compares.
struct Files {
    script: String,
    compose: Node,
    haproxy: Haproxy,
    dockerfile: Vec<Stage>,
}

fn files() -> Files {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Files {
        script: read("deploy/cluster"),
        compose: yaml::parse(&read("deploy/docker-compose.yml")),
        haproxy: Haproxy::parse(&read("deploy/haproxy.cfg")),
        dockerfile: dockerfile(&read("Dockerfile")),
    }
}

// --- the checks ---------------------------------------------------------------------------------

#[test]
fn the_nats_servers_are_those_of_deploy_cluster() {
    let f = files();
    let script = Script::new(&f.script);
    let nats = services(&f.compose, "nats:");
    let expected: Vec<String> = script.nats_numbers().iter().map(|n| format!("nats-{n}")).collect();
    assert_eq!(nats, expected, "NATS services of the compose file (deploy/cluster starts nats-N)");

    let image = f.compose.at("services").at(&nats[0]).at("image").str();
    let version = image.strip_prefix("nats:").and_then(|t| t.strip_suffix("-alpine"));
    let version =
        version.unwrap_or_else(|| panic!("NATS image {image}: expected nats:X.Y.Z-alpine"));
    let pinned = std::fs::read_to_string("scripts/nats-server").expect("scripts/nats-server");
    let assigned = |name: &str| {
        let line = pinned.lines().find_map(|l| l.strip_prefix(&format!("{name}=")));
        line.unwrap_or_else(|| panic!("{name}= in scripts/nats-server")).trim_start_matches('v')
    };
    assert_eq!(
        version,
        assigned("VERSION"),
        "the NATS image is the release scripts/nats-server pins"
    );
    assert!(
        numbers(version) >= numbers(assigned("MIN_VERSION")) && numbers(version) >= vec![2, 11],
        "NATS {version} is older than the hub accepts"
    );

    let script_flags = script.nats_flags();
    let cluster_name =
        script_flags.get("--cluster_name").expect("--cluster_name in deploy/cluster");
    let declared_volumes = f.compose.at("volumes").keys();
    let (mut route_ports, mut client_ports) = (BTreeSet::new(), BTreeSet::new());
    for service in &nats {
        let node = f.compose.at("services").at(service);
        assert_eq!(node.at("image").str(), image, "{service}: every NATS server runs one image");
        let flags = nats_command(node.at("command"));
        // The container listens on all of its interfaces and logs to its output.
        let not_here = ["--addr", "--log"];
        let wanted: BTreeSet<&str> =
            script_flags.keys().map(String::as_str).filter(|f| !not_here.contains(f)).collect();
        let given: BTreeSet<&str> = flags.keys().map(String::as_str).collect();
        assert_eq!(given, wanted, "{service}: the flags deploy/cluster gives nats-server");
        assert_eq!(flags["--name"], *service, "{service}: --name is the service's name");
        assert_eq!(
            &flags["--cluster_name"], cluster_name,
            "{service}: deploy/cluster's cluster name"
        );
        assert!(flags["--jetstream"].is_empty(), "{service}: --jetstream takes no value");

        let own = port_of(&flags["--cluster"]);
        let routes: Vec<String> = nats.iter().map(|s| format!("nats://{s}:{own}")).collect();
        assert_eq!(flags["--routes"], routes.join(","), "{service}: routes to every server");
        route_ports.insert(own);
        client_ports.insert(flags["--port"].clone());

        let store = &flags["--store_dir"];
        let volumes: Vec<&str> = node.at("volumes").list().iter().map(Node::str).collect();
        assert_eq!(volumes, [format!("{service}:{store}")], "{service}: its own volume at {store}");
        assert!(declared_volumes.contains(&service.as_str()), "{service}: a declared volume");

        let check = node.at("healthcheck").at("test").list();
        let url = check.last().expect("a health check command").str();
        assert_eq!(
            url,
            format!("http://127.0.0.1:{}/healthz", flags["--http_port"]),
            "{service}: the health check asks the monitoring port, as deploy/cluster waits for it"
        );
    }
    assert_eq!(route_ports.len(), 1, "one route port for all NATS servers: {route_ports:?}");
    assert_eq!(client_ports.len(), 1, "one client port for all NATS servers: {client_ports:?}");

    // The hubs reach every server on its client port.
    let client_port = client_ports.first().expect("a client port");
    let urls: Vec<String> = nats.iter().map(|s| format!("nats://{s}:{client_port}")).collect();
    for hub in services(&f.compose, "quicksilver") {
        let env = environment(f.compose.at("services").at(&hub));
        assert_eq!(env["MERCURE_NATS_URL"], urls.join(","), "{hub}: MERCURE_NATS_URL");
        let depends = f.compose.at("services").at(&hub).at("depends_on").keys();
        for server in &nats {
            assert!(depends.contains(&server.as_str()), "{hub} starts after {server}");
        }
    }
}

#[test]
fn the_hubs_have_the_settings_of_deploy_cluster_and_only_real_ones() {
    let f = files();
    let script = Script::new(&f.script);
    let hubs = services(&f.compose, "quicksilver");
    let expected: Vec<String> =
        (1..=script.default("nodes")).map(|n| format!("{}{n}", script.server_prefix())).collect();
    assert_eq!(hubs, expected, "hub services (deploy/cluster starts --nodes, default 3)");

    let script_env = script.hub_environment();
    let first = environment(f.compose.at("services").at(&hubs[0]));
    for hub in &hubs {
        let env = environment(f.compose.at("services").at(hub));
        assert_eq!(env, first, "{hub}: every node has the same settings");
        for name in env.keys().filter(|n| n.starts_with("MERCURE_")) {
            assert_setting(name, &format!("{hub} in deploy/docker-compose.yml"));
        }
    }
    // The image sets the listen address; every other variable is deploy/cluster's.
    let wanted: BTreeSet<&str> =
        script_env.keys().map(String::as_str).filter(|n| *n != "MERCURE_ADDR").collect();
    let given: BTreeSet<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(given, wanted, "the variables deploy/cluster gives its hubs");
    for (name, value) in &script_env {
        match name.as_str() {
            "MERCURE_ADDR" | "MERCURE_NATS_URL" => {} // Checked with the ports.
            // The script makes a key when none is given; the containers must be given one.
            "MERCURE_JWT_KEY" => assert!(
                first[name].starts_with("${MERCURE_JWT_KEY:?"),
                "MERCURE_JWT_KEY is required, with a message when unset: {}",
                first[name]
            ),
            _ => assert_eq!(&first[name], value, "{name}: deploy/cluster's value"),
        }
    }

    let (_, env) = final_env(&f.dockerfile);
    for name in env.keys().filter(|n| n.starts_with("MERCURE_")) {
        assert_setting(name, "the Dockerfile");
    }
}

#[test]
fn haproxy_cfg_has_the_settings_deploy_cluster_writes() {
    let f = files();
    let written = Haproxy::parse(&Script::new(&f.script).haproxy_heredoc());
    assert!(written.sections.len() >= 4, "deploy/cluster's HAProxy configuration was found");
    // What the container version may add: Docker's DNS for the service names.
    let resolvers = f.haproxy.sections.keys().find_map(|s| s.strip_prefix("resolvers "));
    let resolvers = resolvers.expect("a resolvers section for Docker's DNS");
    let extensions = |keyword: &str, extra: &[&str]| {
        keyword == "default-server" && extra == ["init-addr", "libc,none", "resolvers", resolvers]
    };
    for (name, lines) in &written.sections {
        let ours = f.haproxy.sections.get(name);
        let ours = ours.unwrap_or_else(|| panic!("deploy/haproxy.cfg has no `{name}` section"));
        let ours: Vec<&String> = ours.iter().filter(|l| !l.starts_with("server ")).collect();
        for line in lines {
            let matching = ours.iter().filter(|o| directive_matches(line, o, extensions)).count();
            assert_eq!(matching, 1, "`{line}` ({name}) once in deploy/haproxy.cfg");
        }
        for line in &ours {
            assert!(
                lines.iter().any(|l| directive_matches(l, line, extensions)),
                "`{line}` ({name}) in deploy/haproxy.cfg is not in deploy/cluster's configuration"
            );
        }
    }
    for name in f.haproxy.sections.keys() {
        assert!(
            written.sections.contains_key(name) || name == &format!("resolvers {resolvers}"),
            "deploy/haproxy.cfg's section `{name}` is not in deploy/cluster's configuration"
        );
    }
    let default_server = f.haproxy.directive("backend hubs", "default-server");
    assert!(
        default_server.contains("init-addr libc,none") && default_server.ends_with(resolvers),
        "the servers follow Docker's DNS and start unresolved: {default_server}"
    );
}

#[test]
fn the_ports_agree_between_compose_haproxy_and_the_image() {
    let f = files();
    let script = Script::new(&f.script);
    let services_node = f.compose.at("services");

    // The load balancer: deploy/cluster's default port, on loopback as there.
    let lb = services(&f.compose, "haproxy:");
    assert_eq!(lb, ["haproxy"], "one HAProxy service");
    let lb = services_node.at("haproxy");
    let bind = port_of(&f.haproxy.directive("frontend mercure", "bind"));
    let published: Vec<&str> = lb.at("ports").list().iter().map(Node::str).collect();
    let expected = format!("127.0.0.1:{}:{bind}", script.default("port"));
    assert_eq!(published, [expected.as_str()], "HAProxy's published port");
    let mounts: Vec<&str> = lb.at("volumes").list().iter().map(Node::str).collect();
    assert_eq!(
        mounts,
        ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"],
        "deploy/haproxy.cfg is where the official image reads its configuration"
    );
    let check = lb.at("healthcheck").at("test").list().last().expect("a health check").str();
    assert_eq!(check, format!("http://127.0.0.1:{bind}/healthz"), "HAProxy's health check");
    let maxconn: u64 = f.haproxy.directive("global", "maxconn").parse().expect("a number");
    let nofile: u64 = lb.at("ulimits").at("nofile").str().parse().expect("a number");
    assert!(nofile > 2 * maxconn, "nofile {nofile} holds two descriptors a connection");

    // The hubs: the image's port, behind HAProxy under their service names.
    let (addr, env) = final_env(&f.dockerfile);
    let port = addr.strip_prefix("0.0.0.0:").expect("MERCURE_ADDR=0.0.0.0:<port> in the image");
    let exposed = instructions(last(&f.dockerfile), "EXPOSE");
    assert_eq!(exposed, [port], "the Dockerfile EXPOSEs MERCURE_ADDR's port");
    let servers: Vec<String> = f.haproxy.sections["backend hubs"]
        .iter()
        .filter_map(|l| l.strip_prefix("server "))
        .map(str::to_owned)
        .collect();
    let hubs = services(&f.compose, "quicksilver");
    let expected: Vec<String> = hubs.iter().map(|h| format!("{h} {h}:{port}")).collect();
    assert_eq!(servers, expected, "HAProxy's servers are the hub services on the image's port");
    for hub in &hubs {
        let given = environment(services_node.at(hub));
        assert!(!given.contains_key("MERCURE_ADDR"), "{hub}: the image's address is the one used");
    }
    assert!(env.contains_key("MERCURE_HISTORY_PATH"), "the image puts the store in its data dir");
}

#[test]
fn the_image_is_built_locked_and_runs_unprivileged() {
    let f = files();
    let stages = &f.dockerfile;
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let (build_image, build_name) = from(&stages[0]);
    let toolchain =
        build_image.strip_prefix("rust:").and_then(|t| t.strip_suffix("-slim-bookworm"));
    let toolchain = toolchain.unwrap_or_else(|| panic!("build stage {build_image}"));
    let cargo = std::fs::read_to_string("Cargo.toml").expect("Cargo.toml");
    let msrv = cargo.lines().find_map(|l| l.strip_prefix("rust-version = ")).expect("rust-version");
    assert!(numbers(toolchain) >= numbers(msrv.trim_matches('"')), "{toolchain} below {msrv}");
    let runs = instructions(&stages[0], "RUN").join("\n");
    assert!(runs.contains("cargo build --release --locked -p quicksilver"), "the build: {runs}");

    let runtime = last(stages);
    let (runtime_image, _) = from(runtime);
    assert_eq!(runtime_image, "debian:bookworm-slim", "the build stage's Debian release");
    let copies = instructions(runtime, "COPY");
    let binary =
        format!("--from={} /usr/local/bin/quicksilver /usr/local/bin/quicksilver", build_name);
    assert!(copies.contains(&binary.as_str()), "the binary copied from the build: {copies:?}");
    assert_eq!(instructions(runtime, "ENTRYPOINT"), ["[\"/usr/local/bin/quicksilver\"]"]);

    let users = instructions(runtime, "USER");
    let user = users.last().expect("a USER in the final stage");
    let ids: Vec<u32> = user.split(':').map(|id| id.parse().expect("a numeric uid:gid")).collect();
    assert!(ids.len() == 2 && ids.iter().all(|&id| id != 0), "USER {user}: numeric, not root");
    let (_, env) = final_env(stages);
    let data = Path::new(&env["MERCURE_HISTORY_PATH"]).parent().expect("a data directory");
    let data = data.to_str().expect("UTF-8");
    let owned = format!("-o {} -g {} ", ids[0], ids[1]);
    assert!(
        instructions(runtime, "RUN").iter().any(|r| r.contains(&owned) && r.ends_with(data)),
        "{data} is created writable for {user}"
    );

    let health = instructions(runtime, "HEALTHCHECK").join("\n");
    assert!(health.contains("/healthz") && !health.contains("/readyz"), "liveness: {health}");
    assert_eq!(instructions(runtime, "STOPSIGNAL"), ["SIGTERM"]);

    // Compose builds this file, and gives the hubs time to drain before SIGKILL.
    for hub in services(&f.compose, "quicksilver") {
        let node = f.compose.at("services").at(&hub);
        assert_eq!(node.at("build").at("context").str(), "..", "{hub}: the repository root");
        assert_eq!(node.at("build").at("dockerfile").str(), "Dockerfile");
        let grace = node.at("stop_grace_period").str();
        let grace: u64 = grace.strip_suffix('s').and_then(|s| s.parse().ok()).expect("Ns");
        let drain = quicksilver::config::DEFAULT_DRAIN_TIMEOUT.as_secs();
        assert!(grace > drain, "{hub}: stop_grace_period {grace}s above drain_timeout {drain}s");
    }
}

#[test]
fn the_build_context_holds_the_workspace_and_nothing_else() {
    let ignore = std::fs::read_to_string(".dockerignore").expect(".dockerignore");
    let patterns: Vec<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    // Docker's rule: the last pattern that matches decides. Only `*` and plain paths are used.
    let sent = |path: &str| {
        let mut sent = true;
        for pattern in &patterns {
            let (include, name) = match pattern.strip_prefix('!') {
                Some(name) => (true, name),
                None => (false, *pattern),
            };
            let plain = !name.contains(['?', '[']) && (name == "*" || !name.contains('*'));
            assert!(plain, "a .dockerignore pattern this check does not read: {name}");
            if name == "*" || path == name || path.starts_with(&format!("{name}/")) {
                sent = include;
            }
        }
        sent
    };
    let cargo = std::fs::read_to_string("Cargo.toml").expect("Cargo.toml");
    let members = cargo.lines().find_map(|l| l.strip_prefix("members = ")).expect("members");
    for member in members.trim_matches(['[', ']']).split(',').map(|m| m.trim().trim_matches('"')) {
        let prefix = if member == "." { String::new() } else { format!("{member}/") };
        // A library member has src/lib.rs, a program src/main.rs: whichever it has is sent.
        let sources = ["src/main.rs", "src/lib.rs"].map(|file| format!("{prefix}{file}"));
        let source = sources.iter().find(|path| std::path::Path::new(path).exists());
        let source =
            source.unwrap_or_else(|| panic!("member {member} has no src/main.rs or src/lib.rs"));
        for path in [&format!("{prefix}Cargo.toml"), source] {
            assert!(sent(path), "{path} is in the build context");
        }
    }
    for path in ["Cargo.lock", "src/lib.rs"] {
        assert!(sent(path), "{path} is in the build context");
    }
    for path in ["target/release/quicksilver", ".git/HEAD", ".env", "deploy/.env", "README.md"] {
        assert!(!sent(path), "{path} stays out of the build context");
    }
}

#[test]
fn haproxy_accepts_the_configuration() {
    let haproxy = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(haproxy) = haproxy else {
        eprintln!("HAProxy is not installed: `haproxy -c` skipped (the other checks still ran)");
        return;
    };
    let output = Command::new(haproxy)
        .args(["-c", "-f", "deploy/haproxy.cfg"])
        .output()
        .expect("haproxy -c");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "haproxy -c refuses deploy/haproxy.cfg:\n{stderr}");
    // The service names resolve only inside compose's network: `init-addr none` lets HAProxy start
    // (and check) without them. Any other warning is a finding.
    let other: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("[WARNING]") || l.contains("[ALERT]"))
        .filter(|l| !l.contains("could not resolve address"))
        .collect();
    assert!(other.is_empty(), "haproxy -c warns about deploy/haproxy.cfg:\n{}", other.join("\n"));
}

#[test]
fn the_yaml_reader_understands_the_subset_and_refuses_the_rest() {
    let node = yaml::parse(
        "# a comment\nx-base: &base\n  image: a:1 # trailing\n  list: [\"CMD\", 'it''s', plain]\n\
         services:\n  one:\n    <<: *base\n    image: b:2\n    env:\n      K: \"v # kept\"\n\
         \x20   ports:\n      - \"1:2\"\nvolumes:\n  v:\n",
    );
    let one = node.at("services").at("one");
    assert_eq!(one.at("image").str(), "b:2", "an explicit key wins over the merged one");
    let list: Vec<&str> = one.at("list").list().iter().map(Node::str).collect();
    assert_eq!(list, ["CMD", "it's", "plain"]);
    assert_eq!(one.at("env").at("K").str(), "v # kept");
    assert_eq!(one.at("ports").list()[0].str(), "1:2");
    assert_eq!(node.at("volumes").at("v"), &Node::Null);
    for refused in
        ["a: {b: c}", "a: |\n  text", "a:\n- b", "a:\n  - b: c", "a: 1\na: 2", "a: *none"]
    {
        let result = std::panic::catch_unwind(|| yaml::parse(refused));
        assert!(result.is_err(), "accepted unsupported YAML: {refused:?}");
    }
}

// --- deploy/cluster -----------------------------------------------------------------------------

/// What deploy/cluster says, read from its text.
struct Script {
    /// Its text, for the here-document.
    text: String,
    /// Its lines, backslash continuations joined, indentation removed.
    lines: Vec<String>,
}

impl Script {
    fn new(text: &str) -> Self {
        Self { text: text.to_owned(), lines: logical_lines(text) }
    }

    /// A default of its options (`nodes=3 dir=... port=8080`).
    fn default(&self, name: &str) -> u16 {
        let line = self.lines.iter().find(|l| l.starts_with("nodes=")).expect("the defaults line");
        let value = shell_words(line)
            .into_iter()
            .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned));
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("default {name} in {line}"))
    }

    /// The line that starts the NATS servers.
    fn nats_line(&self) -> usize {
        self.lines.iter().position(|l| l.starts_with("\"$nats\"")).expect("the nats-server line")
    }

    /// The numbers of the NATS servers: the loop around the line that starts them.
    fn nats_numbers(&self) -> Vec<u16> {
        let line = self.lines[..self.nats_line()].iter().rev().find(|l| l.starts_with("for n in "));
        let line = line.expect("the loop over the NATS servers");
        let list = line.strip_prefix("for n in ").and_then(|l| l.split_once(';')).expect("a list");
        list.0.split_whitespace().map(|n| n.parse().expect("a number")).collect()
    }

    /// The flags given to nats-server, with their values as written (`--jetstream` has none).
    fn nats_flags(&self) -> BTreeMap<String, String> {
        let words = shell_words(&self.lines[self.nats_line()]);
        let mut flags = BTreeMap::new();
        for (i, word) in words.iter().enumerate().filter(|(_, w)| w.starts_with("--")) {
            let value = words.get(i + 1).filter(|v| !v.starts_with('-') && !v.starts_with('>'));
            flags.insert(word.clone(), value.map(|v| unquote(v)).unwrap_or_default());
        }
        flags
    }

    /// The variables a hub is started with: `NAME=value ... "$hub"`.
    fn hub_environment(&self) -> BTreeMap<String, String> {
        let line = self.lines.iter().find(|l| l.starts_with("MERCURE_ADDR=")).expect("hub line");
        let words = shell_words(line);
        let assignments = words.iter().take_while(|w| *w != "\"$hub\"");
        assignments
            .map(|w| w.split_once('=').unwrap_or_else(|| panic!("NAME=value, not {w}")))
            .map(|(name, value)| (name.to_owned(), unquote(value)))
            .collect()
    }

    /// The name of a hub server in HAProxy's configuration, less its number (`hub-`).
    fn server_prefix(&self) -> String {
        let line = self.lines.iter().find(|l| l.contains("echo \"    server ")).expect("servers");
        let name = line.split("server ").nth(1).and_then(|rest| rest.split_whitespace().next());
        let name = name.expect("a server name");
        name.strip_suffix("$n").unwrap_or_else(|| panic!("hub-$n, not {name}")).to_owned()
    }

    /// The HAProxy configuration it writes (the here-document with a backend).
    fn haproxy_heredoc(&self) -> String {
        let mut rest = self.text.as_str();
        while let Some(start) = rest.find("cat <<EOF\n") {
            let body = &rest[start + "cat <<EOF\n".len()..];
            let end = body.find("\nEOF\n").expect("the end of the here-document");
            if body[..end].contains("\nbackend ") {
                return body[..end].to_owned();
            }
            rest = &body[end..];
        }
        panic!("no HAProxy configuration in deploy/cluster")
    }
}

/// Shell lines with their backslash continuations joined (comments kept: heredocs need them).
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start.trim_start()),
            None if current.is_empty() => lines.push(line.trim_start().to_owned()),
            None => lines.push(std::mem::take(&mut current) + line.trim_start()),
        }
    }
    lines
}

/// Words of a shell line, split on blanks outside double quotes and `$((...))` (quotes kept).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    let (mut quoted, mut depth) = (false, 0_usize);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if c.is_whitespace() && !quoted && depth == 0 => {
                words.push(String::new());
                continue;
            }
            _ => {}
        }
        words.last_mut().expect("a word").push(c);
    }
    words.into_iter().filter(|w| !w.is_empty()).collect()
}

fn unquote(value: &str) -> String {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).to_owned()
}

// --- deploy/docker-compose.yml ------------------------------------------------------------------

/// The services whose image starts with `image` (`quicksilver` for the built hub image), in order.
fn services(compose: &Node, image: &str) -> Vec<String> {
    let all = compose.at("services").map();
    let known = ["nats:", "quicksilver", "haproxy:"];
    for (name, service) in all {
        let own = service.at("image").str();
        assert!(known.iter().any(|k| own.starts_with(k)), "service {name}: unexpected image {own}");
    }
    all.iter()
        .filter(|(_, s)| s.at("image").str().starts_with(image))
        .map(|(n, _)| n.clone())
        .collect()
}

/// A service's `environment`, a map of strings.
fn environment(service: &Node) -> BTreeMap<String, String> {
    service.at("environment").map().iter().map(|(k, v)| (k.clone(), v.str().to_owned())).collect()
}

/// The flags of a NATS service's command, written `--flag=value` or `--flag`.
fn nats_command(command: &Node) -> BTreeMap<String, String> {
    let mut flags = BTreeMap::new();
    for item in command.list() {
        let item = item.str();
        assert!(item.starts_with("--"), "NATS flags are written --flag=value: {item}");
        let (flag, value) = item.split_once('=').unwrap_or((item, ""));
        assert!(flags.insert(flag.to_owned(), value.to_owned()).is_none(), "{flag} twice");
    }
    flags
}

/// A setting the hub knows, from its `MERCURE_` variable.
fn assert_setting(variable: &str, origin: &str) {
    let key = variable.strip_prefix("MERCURE_").expect("a MERCURE_ variable").to_ascii_lowercase();
    assert!(
        quicksilver::config::KEYS.iter().any(|(known, _)| *known == key),
        "{variable} ({origin}) is not a setting of the hub (see quicksilver --help)"
    );
}

// --- deploy/haproxy.cfg -------------------------------------------------------------------------

/// An HAProxy configuration: its sections (`backend hubs`) and their directives, comments out and
/// blanks collapsed.
struct Haproxy {
    sections: BTreeMap<String, Vec<String>>,
}

impl Haproxy {
    fn parse(text: &str) -> Self {
        let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut current = None;
        for line in text.lines() {
            let content = line.split('#').next().unwrap_or_default();
            let words: Vec<&str> = content.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            if line.starts_with(char::is_whitespace) {
                let section: &String = current.as_ref().expect("a directive inside a section");
                sections.get_mut(section).expect("the section").push(words.join(" "));
            } else {
                let name = words.join(" ");
                assert!(sections.insert(name.clone(), Vec::new()).is_none(), "{name} twice");
                current = Some(name);
            }
        }
        Self { sections }
    }

    /// The arguments of the one `keyword` directive of `section`.
    fn directive(&self, section: &str, keyword: &str) -> String {
        let lines = self.sections.get(section).unwrap_or_else(|| panic!("no section {section}"));
        let found: Vec<&String> =
            lines.iter().filter(|l| l.split_whitespace().next() == Some(keyword)).collect();
        assert_eq!(found.len(), 1, "one `{keyword}` in `{section}`: {found:?}");
        found[0][keyword.len()..].trim().to_owned()
    }
}

/// Whether `ours` is the directive `written` by deploy/cluster: the same words, a word holding a
/// shell expansion (`$port`) standing for any, and extra words at the end only where
/// `extension(keyword, extra words)` allows them.
fn directive_matches(written: &str, ours: &str, extension: impl Fn(&str, &[&str]) -> bool) -> bool {
    let written: Vec<&str> = written.split_whitespace().collect();
    let words: Vec<&str> = ours.split_whitespace().collect();
    let same = written.len() <= words.len()
        && written.iter().zip(&words).all(|(w, o)| w.contains('$') || w == o);
    same && (written.len() == words.len() || extension(words[0], &words[written.len()..]))
}

/// The port of `host:port` or `nats://host:port`.
fn port_of(address: &str) -> String {
    let port = address.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    assert!(!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()), "a port in {address}");
    port.to_owned()
}

/// The numbers of a version, `2.14.9` as `[2, 14, 9]`.
fn numbers(version: &str) -> Vec<u32> {
    version.split('.').map(|n| n.parse().unwrap_or_else(|_| panic!("version {version}"))).collect()
}

// --- Dockerfile ---------------------------------------------------------------------------------

/// A stage of a Dockerfile: its instructions, keyword and arguments, from its `FROM` on.
type Stage = Vec<(String, String)>;

/// The stages of a Dockerfile, continuation lines joined and comments left out.
fn dockerfile(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            current.push_str(start);
            current.push(' ');
            continue;
        }
        let instruction = std::mem::take(&mut current) + line;
        let (keyword, args) = instruction.split_once(char::is_whitespace).expect("KEYWORD args");
        let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        let stage = stages.last_mut().expect("FROM first");
        stage.push((keyword.to_owned(), args));
    }
    stages
}

fn last(stages: &[Stage]) -> &Stage {
    stages.last().expect("a stage")
}

/// The arguments of every `keyword` instruction of a stage.
fn instructions<'a>(stage: &'a Stage, keyword: &str) -> Vec<&'a str> {
    stage.iter().filter(|(k, _)| k == keyword).map(|(_, args)| args.as_str()).collect()
}

/// A stage's image and its name (`FROM image AS name`).
fn from(stage: &Stage) -> (&str, &str) {
    let words: Vec<&str> = instructions(stage, "FROM")[0].split(' ').collect();
    match words[..] {
        [image] => (image, ""),
        [image, "AS", name] => (image, name),
        _ => panic!("FROM {words:?}"),
    }
}

/// The final stage's `ENV` (written `NAME=value`), and its `MERCURE_ADDR`.
fn final_env(stages: &[Stage]) -> (String, BTreeMap<String, String>) {
    let mut env = BTreeMap::new();
    for args in instructions(last(stages), "ENV") {
        for pair in args.split(' ') {
            let (name, value) =
                pair.split_once('=').unwrap_or_else(|| panic!("ENV NAME=value: {pair}"));
            env.insert(name.to_owned(), value.to_owned());
        }
    }
    let addr = env.get("MERCURE_ADDR").cloned().expect("ENV MERCURE_ADDR in the image");
    (addr, env)
}

// --- the YAML subset ----------------------------------------------------------------------------

/// A reader of the YAML the compose file uses: block maps and lists of scalars, flow lists of
/// scalars, quoted and plain scalars, comments, anchors and `<<` merges of maps. Anything else
/// panics with its line, so that the checks never read a value they misunderstood.
mod yaml {
    use std::collections::HashMap;

    /// A value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Node {
        Null,
        Scalar(String),
        List(Vec<Node>),
        Map(Vec<(String, Node)>),
    }

    impl Node {
        /// The value of `key` in a map.
        pub fn at(&self, key: &str) -> &Node {
            let found = self.map().iter().find(|(k, _)| k == key).map(|(_, v)| v);
            found.unwrap_or_else(|| panic!("no `{key}` in {self:?}"))
        }

        /// The keys of a map, in order.
        pub fn keys(&self) -> Vec<&str> {
            self.map().iter().map(|(key, _)| key.as_str()).collect()
        }

        pub fn map(&self) -> &[(String, Node)] {
            match self {
                Node::Map(entries) => entries,
                other => panic!("a map expected, not {other:?}"),
            }
        }

        pub fn list(&self) -> &[Node] {
            match self {
                Node::List(items) => items,
                other => panic!("a list expected, not {other:?}"),
            }
        }

        pub fn str(&self) -> &str {
            match self {
                Node::Scalar(text) => text,
                other => panic!("a scalar expected, not {other:?}"),
            }
        }
    }

    struct Line {
        number: usize,
        indent: usize,
        text: String,
    }

    struct Parser {
        lines: Vec<Line>,
        pos: usize,
        anchors: HashMap<String, Node>,
    }

    pub fn parse(source: &str) -> Node {
        let mut lines = Vec::new();
        for (i, raw) in source.lines().enumerate() {
            assert!(!raw.contains('\t'), "line {}: a tab", i + 1);
            let text = without_comment(raw).trim_end();
            if text.trim().is_empty() {
                continue;
            }
            let indent = text.len() - text.trim_start().len();
            lines.push(Line { number: i + 1, indent, text: text.trim_start().to_owned() });
        }
        let mut parser = Parser { lines, pos: 0, anchors: HashMap::new() };
        let root = parser.map(0);
        if let Some(line) = parser.lines.get(parser.pos) {
            panic!("line {}: unexpected indentation", line.number);
        }
        root
    }

    /// The line less its comment: a `#` at its start or after a blank, outside quotes.
    fn without_comment(line: &str) -> &str {
        let mut quote = None;
        let mut previous = ' ';
        for (i, c) in line.char_indices() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '#') if previous == ' ' => return &line[..i],
                _ => {}
            }
            previous = c;
        }
        line
    }

    impl Parser {
        fn map(&mut self, indent: usize) -> Node {
            let mut entries: Vec<(String, Node)> = Vec::new();
            let mut merged = Vec::new();
            while let Some(line) = self.lines.get(self.pos).filter(|l| l.indent == indent) {
                let number = line.number;
                assert!(
                    !line.text.starts_with('-'),
                    "line {number}: a list where a key was expected"
                );
                let (key, rest) = match line.text.split_once(": ") {
                    Some((key, rest)) => (key.to_owned(), rest.trim().to_owned()),
                    None => match line.text.strip_suffix(':') {
                        Some(key) => (key.to_owned(), String::new()),
                        None => panic!("line {number}: `key: value` expected"),
                    },
                };
                let plain = |c: char| c.is_ascii_alphanumeric() || "_-.<".contains(c);
                assert!(key.chars().all(plain), "line {number}: unsupported key {key:?}");
                self.pos += 1;
                let (anchor, rest) = match rest.strip_prefix('&') {
                    Some(anchored) => {
                        let (name, rest) = anchored.split_once(' ').unwrap_or((anchored, ""));
                        (Some(name.to_owned()), rest.trim().to_owned())
                    }
                    None => (None, rest),
                };
                let value = if !rest.is_empty() {
                    self.scalar(&rest, number)
                } else {
                    match self.lines.get(self.pos) {
                        Some(next) if next.indent > indent => self.block(next.indent),
                        Some(next) if next.indent == indent && next.text.starts_with('-') => {
                            panic!("line {}: indent a list below its key", next.number)
                        }
                        _ => Node::Null,
                    }
                };
                if let Some(anchor) = anchor {
                    self.anchors.insert(anchor, value.clone());
                }
                if key == "<<" {
                    merged.push(value);
                } else {
                    assert!(entries.iter().all(|(k, _)| *k != key), "line {number}: {key} twice");
                    entries.push((key, value));
                }
            }
            // A merge adds the keys the map does not set itself.
            for source in merged {
                for (key, value) in source.map() {
                    if entries.iter().all(|(k, _)| k != key) {
                        entries.push((key.clone(), value.clone()));
                    }
                }
            }
            Node::Map(entries)
        }

        fn block(&mut self, indent: usize) -> Node {
            if self.lines[self.pos].text.starts_with('-') {
                self.list(indent)
            } else {
                self.map(indent)
            }
        }

        fn list(&mut self, indent: usize) -> Node {
            let mut items = Vec::new();
            while let Some(line) = self.lines.get(self.pos).filter(|l| l.indent == indent) {
                let number = line.number;
                let item = line.text.strip_prefix("- ").map(str::trim);
                let item = item.unwrap_or_else(|| panic!("line {number}: `- item` expected"));
                let item = item.to_owned();
                self.pos += 1;
                let value = self.scalar(&item, number);
                if let Node::Scalar(text) = &value {
                    let mapping = text.contains(": ") || text.ends_with(':');
                    assert!(
                        !mapping || item.starts_with(['"', '\'']),
                        "line {number}: a map in a list"
                    );
                }
                items.push(value);
            }
            Node::List(items)
        }

        /// A value written on its key's or item's line.
        fn scalar(&self, text: &str, number: usize) -> Node {
            if let Some(name) = text.strip_prefix('*') {
                let node = self.anchors.get(name);
                return node
                    .unwrap_or_else(|| panic!("line {number}: unknown anchor {name}"))
                    .clone();
            }
            if let Some(inner) = text.strip_prefix('[') {
                let inner = inner.strip_suffix(']');
                let inner = inner.unwrap_or_else(|| panic!("line {number}: an unclosed ["));
                return Node::List(
                    split_flow(inner).iter().map(|item| self.scalar(item, number)).collect(),
                );
            }
            let unsupported = ['{', '|', '>', '&', '!', '%', '@', '`'];
            assert!(!text.starts_with(unsupported), "line {number}: unsupported value {text}");
            if let Some(inner) = text.strip_prefix('"') {
                let inner = inner.strip_suffix('"');
                let inner = inner.unwrap_or_else(|| panic!("line {number}: an unclosed \""));
                assert!(!inner.contains(['"', '\\']), "line {number}: escapes are not read");
                return Node::Scalar(inner.to_owned());
            }
            if let Some(inner) = text.strip_prefix('\'') {
                let inner = inner.strip_suffix('\'');
                let inner = inner.unwrap_or_else(|| panic!("line {number}: an unclosed '"));
                return Node::Scalar(inner.replace("''", "'"));
            }
            Node::Scalar(text.to_owned())
        }
    }

    /// The items of a flow list, split on the commas outside quotes.
    fn split_flow(inner: &str) -> Vec<String> {
        let mut items = vec![String::new()];
        let mut quote = None;
        for c in inner.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, ',') => {
                    items.push(String::new());
                    continue;
                }
                _ => {}
            }
            items.last_mut().expect("an item").push(c);
        }
        items.into_iter().map(|i| i.trim().to_owned()).filter(|i| !i.is_empty()).collect()
    }
}
