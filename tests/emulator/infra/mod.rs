//! Offline checks of the infrastructure templates, one file per template: `template.rs` (the SAM
//! application `infra/template.yaml` and the declared IAM action lists `infra/iam-actions.json`),
//! `member.rs` (the member stack `infra/member.yaml`, mirrored from the hub), `assume.rs` (the hub's
//! side of acting in member accounts, evaluated), `mutations.rs` (each hub-and-spoke check proven on
//! a mutated template); `eval.rs` (CloudFormation intrinsics and IAM conditions evaluated offline) and
//! `common.rs` (loading and navigating the templates) serve them all.
//!
//! Other test modules use the names below: `drill.rs` checks its CallLog against [`is_granted`],
//! `encryption.rs` evaluates the templates' key policies with the rest.

mod assume;
pub(crate) mod common;
mod eval;
mod member;
mod mutations;
pub(crate) mod template;

pub(crate) use common::{
    canon, covers, functions_by_binary, get, mutated, parse, resolve_ifs, resources, role_id, statements, str_at,
    strings, tag_of, template_text,
};
pub(crate) use eval::{condition_holds, evaluate, glob_matches, Params};
pub(crate) use template::is_granted;
