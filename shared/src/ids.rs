//! The shapes of AWS identifiers the suite checks before trusting them: account ids, region codes,
//! organizational units (depends on nothing else here).

/// Whether `s` is an AWS account id: twelve digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` looks like a region code (`us-east-1`, `eu-central-2`, `us-gov-west-1`).
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `s` names an organizational unit (`ou-ab12-11111111`) or an organization root (`r-ab12`).
pub fn is_org_unit(s: &str) -> bool {
    let ok = |p: &str, min: usize| p.len() >= min && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    match s.split('-').collect::<Vec<_>>().as_slice() {
        ["ou", root, unit] => ok(root, 4) && ok(unit, 8),
        ["r", root] => ok(root, 4),
        _ => false,
    }
}
