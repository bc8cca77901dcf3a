//! ARCHITECTURE.md's invariants on what depends on what, held to the workspace's manifests as
//! `cargo metadata` reads them: a dependency that crosses a boundary fails here, naming it.

use std::collections::BTreeSet;

use kestrel_e2e::workspace_root;

/// Each workspace crate, and the workspace crates its library and binaries may depend on (dev
/// dependencies, for its tests, are free).
const MAY_DEPEND_ON: &[(&str, &[&str])] = &[
    // the protocol: nothing of the project's
    ("kestrel-link", &[]),
    // the mission file and the command-line conventions: the protocol's [link] section
    ("kestrel-mission", &["kestrel-link"]),
    ("kestrel-dictionary", &["kestrel-link"]),
    ("kestrel-thermal", &["kestrel-mission"]),
    // flight and ground never depend on each other: the link is their only contract
    ("kestrel-flight", &["kestrel-link", "kestrel-mission", "kestrel-dictionary", "kestrel-thermal"]),
    ("kestrel-ground", &["kestrel-link", "kestrel-mission", "kestrel-dictionary", "kestrel-thermal"]),
    // the operator's tools use flight's detection code, and nothing of the ground's
    ("kestrel-tools", &["kestrel-link", "kestrel-mission", "kestrel-thermal", "kestrel-flight"]),
    // the fault campaigns drive the real binaries, never their code
    ("kestrel-radiation-sim", &["kestrel-link", "kestrel-mission"]),
    (
        "kestrel-e2e",
        &[
            "kestrel-link",
            "kestrel-mission",
            "kestrel-dictionary",
            "kestrel-thermal",
            "kestrel-flight",
            "kestrel-tools",
        ],
    ),
];

/// Crates of the registries a crate must never depend on directly: (crate, what it must not use).
const NEVER_IN: &[(&str, &[&str])] = &[
    // the flight binary runs in orbit: no web server, no database client
    ("kestrel-flight", &["axum", "hyper", "postgres", "tokio-postgres"]),
    ("kestrel-link", &["axum", "postgres", "ort", "sled"]),
];

/// Crates a package must not link at all, through any of its dependencies: (package, crates).
const NEVER_LINKED: &[(&str, &[&str])] = &[
    // the decoder is fuzzed and embedded: no configuration, command-line or logging set-up in it
    ("kestrel-link", &["toml", "toml_edit", "clap", "tracing-subscriber", "ort", "sled"]),
    // what flies carries no plotting, manifest editing or XML (those are the operator's tools')
    ("kestrel-flight", &["plotters", "toml_edit", "roxmltree", "axum", "hyper", "postgres"]),
    ("kestrel-thermal", &["plotters"]),
];

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON")
}

/// Each package's name and its normal and build dependencies' names.
fn dependencies(metadata: &serde_json::Value) -> Vec<(String, BTreeSet<String>)> {
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_owned();
            let deps = p["dependencies"].as_array().expect("dependencies");
            let used = deps.iter().filter(|d| d["kind"] != "dev").map(|d| d["name"].as_str().expect("name").to_owned());
            (name, used.collect())
        })
        .collect()
}

#[test]
fn no_crate_depends_across_a_boundary_of_architecture_md() {
    let packages = dependencies(&metadata());
    let workspace: BTreeSet<&str> = packages.iter().map(|(name, _)| name.as_str()).collect();
    let listed: BTreeSet<&str> = MAY_DEPEND_ON.iter().map(|(name, _)| *name).collect();
    assert_eq!(workspace, listed, "every workspace crate states what it may depend on here");
    for (name, used) in &packages {
        let allowed = MAY_DEPEND_ON.iter().find(|(n, _)| n == name).map_or(&[][..], |(_, a)| *a);
        for dependency in used.iter().filter(|d| workspace.contains(d.as_str())) {
            assert!(allowed.contains(&dependency.as_str()), "`{name}` depends on `{dependency}`, across a boundary");
        }
        let never = NEVER_IN.iter().find(|(n, _)| n == name).map_or(&[][..], |(_, a)| *a);
        let forbidden: Vec<&String> = used.iter().filter(|d| never.contains(&d.as_str())).collect();
        assert!(forbidden.is_empty(), "`{name}` depends on {forbidden:?}, which it must never use");
    }
}

/// Every crate `package`'s library and binaries link, as `cargo tree` resolves it for that
/// package alone (normal dependencies, the features that package turns on).
fn linked(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["tree", "--offline", "--edges", "normal", "--prefix", "none", "--format", "{lib}", "-p", package])
        .current_dir(workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|name| name.replace('_', "-"))
        .collect()
}

#[test]
fn no_crate_links_what_architecture_md_keeps_out_of_it() {
    for (package, never) in NEVER_LINKED {
        let linked = linked(package);
        assert!(linked.len() > 3, "cargo tree -p {package} listed {linked:?}");
        let found: Vec<&&str> = never.iter().filter(|name| linked.contains(&name.replace('_', "-"))).collect();
        assert!(found.is_empty(), "`{package}` links {found:?}, which ARCHITECTURE.md keeps out of it");
    }
}
