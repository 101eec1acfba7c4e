//! The README documents every setting (each key `--help` lists has a row in its configuration
//! table) and every variable of the legacy hub (a row in its migration table).

#[test]
fn every_setting_has_a_row_in_the_readme_configuration_table() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let start = readme.find("## Configuration").expect("a Configuration section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let rows: Vec<&str> = section[..end].lines().filter(|l| l.starts_with("| `")).collect();
    let missing: Vec<&str> = quicksilver::config::KEYS
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| !rows.iter().any(|row| row.contains(&format!("`{key}`"))))
        .collect();
    assert!(missing.is_empty(), "settings without a row in README.md's table: {missing:?}");
}

#[test]
fn every_legacy_variable_has_a_row_in_the_migration_table() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let start = readme.find("### Moving from the legacy hub").expect("a migration section");
    let section = &readme[start..];
    let missing: Vec<&str> = quicksilver::config::legacy::VARIABLES
        .iter()
        .map(|legacy| legacy.variable)
        .filter(|variable| !section.contains(&format!("| `{variable}` |")))
        .collect();
    assert!(missing.is_empty(), "legacy variables missing from README.md: {missing:?}");
}
