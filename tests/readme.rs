//! The README documents every setting: each key `--help` lists has a row in its configuration
//! table.

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
