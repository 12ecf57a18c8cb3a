//! The known mismatches and what tests assert: [`KNOWN_MISMATCHES`] (denials found that wait for their
//! fix in the templates, each with the fix), [`assert_allowed`] (evaluates everything a function was
//! recorded calling, and fails on any other denial) and the ratchet [`assert_still_known`] (an entry
//! whose denial is gone must go).

use selfheal::Ctx;

use super::conditions::glob;
use super::evaluate::{evaluate, Deployment, Evaluation};
use super::STACK_REGION;

/// A denial this evaluation found that waits for its fix in a file another change owns: the tests
/// that meet it report it (with the fix) and pass; [`assert_allowed`] fails on any other denial. Once
/// fixed, `iam_conditions::replacement::a_standalone_replacement_with_its_elastic_ip_passes_the_conditions`
/// fails until the entry is removed here.
pub struct Known {
    pub function: &'static str,
    pub action: &'static str,
    /// A glob over the resource ARN.
    pub resource: &'static str,
    /// Only in a region other than the stack's (the resource ARN's region).
    pub elsewhere: bool,
    pub fix: &'static str,
}

// The four mismatches this evaluation first found (the healer's DescribeInstanceAttribute; the
// replacement's volumes and network interface under a RequestTag condition; backup vaults and the hub's
// own sweep outside the stack's region) are fixed in the templates; a new one goes here with its fix.
pub const KNOWN_MISMATCHES: [Known; 0] = [];

fn known_mismatch(function: &str, action: &str, resource: &str) -> Option<usize> {
    let elsewhere = resource.split(':').nth(3).is_some_and(|r| !r.is_empty() && r != STACK_REGION);
    KNOWN_MISMATCHES.iter().position(|k| {
        k.function == function && k.action == action && glob(k.resource, resource) && (elsewhere || !k.elsewhere)
    })
}

/// The ratchet: every [`KNOWN_MISMATCHES`] entry of `function` for `actions` was met by `eval`; one
/// that no longer is has been fixed, and its entry must go (so it can never hide a new denial).
pub fn assert_still_known(eval: &Evaluation, function: &str, actions: &[&str]) {
    for (i, k) in KNOWN_MISMATCHES.iter().enumerate() {
        if k.function == function && actions.contains(&k.action) {
            assert!(
                eval.known.contains(&i),
                "{function}: {} on {} is allowed now: remove it from KNOWN_MISMATCHES",
                k.action,
                k.resource
            );
        }
    }
}

/// Evaluates everything `ctx`'s function was recorded calling, and fails on any denial but the
/// [`KNOWN_MISMATCHES`] (reported, with their fix).
pub fn assert_allowed(ctx: &Ctx) -> Evaluation {
    let function = ctx.config.function.as_str();
    let records = ctx.aws.calls.records();
    assert!(!records.is_empty(), "{function}: nothing recorded (was harness::iam::record called?)");
    let mut eval = evaluate(&Deployment::of(&ctx.config), &records)
        .unwrap_or_else(|e| panic!("{function}: the IAM evaluation could not run: {e}"));
    eprintln!("iam conditions, {function}: {}", eval.summary());
    let mut unknown = Vec::new();
    for (text, (action, resource)) in eval.denials.iter().zip(&eval.denied) {
        match known_mismatch(function, action, resource) {
            Some(i) => {
                eprintln!("KNOWN MISMATCH (waits for its fix): {text}\n  fix: {}", KNOWN_MISMATCHES[i].fix);
                eval.known.insert(i);
            }
            None => unknown.push(text.clone()),
        }
    }
    assert!(unknown.is_empty(), "calls infra/template.yaml or infra/member.yaml would deny:\n{}", unknown.join("\n"));
    eval
}

/// [`assert_allowed`] for several functions, with the totals.
pub fn assert_all_allowed<'a>(ctxs: impl IntoIterator<Item = &'a Ctx>) -> Evaluation {
    let mut total = Evaluation::default();
    for c in ctxs {
        total.add(&assert_allowed(c));
    }
    total
}
