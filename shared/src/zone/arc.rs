//! Route 53 ARC zonal shift calls: the shifts in effect on a resource ([`managed`]), and starting,
//! extending and cancelling the evacuator's own ([`start`], [`extend`], [`cancel`]). A `StartZonalShift`
//! whose answer was lost after ARC applied it comes back from the SDK's retry as a conflict naming the
//! shift the first attempt made: [`start`] recognises it as ours by its comment and says so.

use aws_sdk_arczonalshift::error::SdkError;
use aws_sdk_arczonalshift::operation::get_managed_resource::GetManagedResourceError;
use aws_sdk_arczonalshift::operation::start_zonal_shift::StartZonalShiftError;
use std::collections::BTreeMap;

use aws_sdk_arczonalshift::types::{AutoshiftInResource, ConflictExceptionReason, ShiftType, ZonalShiftInResource};
use chrono::{DateTime, Utc};

use super::facts::{ArcShift, ShiftOwner, COMMENT_PREFIX};
use crate::error::{Error, Result};

fn time(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The comment of the evacuator's shift for evacuation `id` (ARC keeps at most 128 characters).
pub fn comment(evacuation: &str) -> String {
    let c = format!("{COMMENT_PREFIX} {evacuation}");
    c.chars().take(128).collect()
}

fn owner(shift_type: Option<&ShiftType>, comment: &str) -> ShiftOwner {
    match shift_type {
        Some(ShiftType::PracticeRun) => ShiftOwner::PracticeRun,
        Some(ShiftType::FisExperiment) => ShiftOwner::FisExperiment,
        Some(ShiftType::ZonalAutoshift) => ShiftOwner::Autoshift,
        _ if comment.starts_with(COMMENT_PREFIX) => ShiftOwner::Selfheal,
        _ => ShiftOwner::Customer,
    }
}

/// What ARC says of a managed resource.
pub struct Managed {
    /// The shifts applied to it now (applied zonal shifts of every owner, and applied autoshifts).
    pub shifts: Vec<ArcShift>,
    /// `zonalAutoshiftStatus` (`ENABLED` / `DISABLED`), and whether a practice run is configured.
    pub autoshift: Option<String>,
    pub practice_run_configured: bool,
}

fn shifts_of(zonal: &[ZonalShiftInResource], auto: &[AutoshiftInResource]) -> Vec<ArcShift> {
    // Every active shift counts, applied or not: one of ours that ARC is not applying (an autoshift
    // wins over it) is still ours, and the autoshift is still ARC's.
    let mut shifts: Vec<ArcShift> = zonal
        .iter()
        .map(|s| ArcShift {
            id: Some(s.zonal_shift_id().to_string()),
            owner: owner(s.shift_type(), s.comment()),
            away_from: s.away_from().to_string(),
            expiry: time(s.expiry_time()),
            comment: s.comment().to_string(),
        })
        .collect();
    shifts.extend(auto.iter().map(|a| ArcShift {
        id: None,
        owner: ShiftOwner::Autoshift,
        away_from: a.away_from().to_string(),
        expiry: None,
        comment: "zonal autoshift".into(),
    }));
    shifts
}

/// The shifts in effect on `arn`; `None` when ARC does not manage it.
pub async fn managed(arc: &aws_sdk_arczonalshift::Client, arn: &str) -> Result<Option<Managed>> {
    let out = match arc.get_managed_resource().resource_identifier(arn).send().await {
        Ok(o) => o,
        Err(SdkError::ServiceError(e)) if matches!(e.err(), GetManagedResourceError::ResourceNotFoundException(_)) => {
            return Ok(None)
        }
        Err(e) => return Err(Error::aws("arc-zonal-shift", "GetManagedResource", e)),
    };
    Ok(Some(Managed {
        shifts: shifts_of(out.zonal_shifts(), out.autoshifts()),
        autoshift: out.zonal_autoshift_status().map(|s| s.as_str().to_string()),
        practice_run_configured: out.practice_run_configuration().is_some(),
    }))
}

/// Every resource ARC manages in the place, by ARN, with the shifts in effect on it: one paginated
/// `ListManagedResources` instead of a call per resource.
pub async fn managed_all(arc: &aws_sdk_arczonalshift::Client) -> Result<BTreeMap<String, Managed>> {
    let mut out = BTreeMap::new();
    let mut pages = arc.list_managed_resources().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("arc-zonal-shift", "ListManagedResources", e))?;
        for r in page.items() {
            let Some(arn) = r.arn() else { continue };
            out.insert(
                arn.to_string(),
                Managed {
                    shifts: shifts_of(r.zonal_shifts(), r.autoshifts()),
                    autoshift: r.zonal_autoshift_status().map(|s| s.as_str().to_string()),
                    practice_run_configured: r.practice_run_status().is_some(),
                },
            );
        }
    }
    Ok(out)
}

/// How a start ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// ARC applied the shift.
    New { id: String, expiry: Option<DateTime<Utc>> },
    /// ARC already had this evacuation's shift: a retry after a lost answer (or a concurrent
    /// invocation) — the shift named is ours, nothing more was started.
    Ours { id: String },
    /// ARC refused: another shift is in effect (somebody else's), or the AZ or resource is not
    /// valid for it. The words are ARC's.
    Refused { why: String },
}

/// Starts a shift of `arn` away from `az_id` for `expires_in`, with the evacuation's comment.
pub async fn start(
    arc: &aws_sdk_arczonalshift::Client,
    arn: &str,
    az_id: &str,
    expires_in: &str,
    comment: &str,
) -> Result<Started> {
    let res = arc
        .start_zonal_shift()
        .resource_identifier(arn)
        .away_from(az_id)
        .expires_in(expires_in)
        .comment(comment)
        .send()
        .await;
    match res {
        Ok(o) => Ok(Started::New { id: o.zonal_shift_id().to_string(), expiry: time(o.expiry_time()) }),
        Err(SdkError::ServiceError(e)) => match e.err() {
            StartZonalShiftError::ConflictException(c)
                if *c.reason() == ConflictExceptionReason::ZonalShiftAlreadyExists =>
            {
                // Ours only when ARC's shift on the resource carries this evacuation's comment.
                let existing = managed(arc, arn).await?;
                let mine = existing.as_ref().and_then(|m| {
                    m.shifts.iter().find(|s| s.comment == comment && s.away_from == az_id).and_then(|s| s.id.clone())
                });
                Ok(match mine {
                    Some(id) => Started::Ours { id },
                    None => Started::Refused {
                        why: format!(
                            "ARC already has zonal shift {} on it: {}",
                            c.zonal_shift_id().unwrap_or("-"),
                            c.message()
                        ),
                    },
                })
            }
            StartZonalShiftError::ConflictException(c) => {
                Ok(Started::Refused { why: format!("ARC: {} ({})", c.message(), c.reason().as_str()) })
            }
            StartZonalShiftError::ValidationException(v) => {
                Ok(Started::Refused { why: format!("ARC: {} ({})", v.message(), v.reason().as_str()) })
            }
            StartZonalShiftError::ResourceNotFoundException(r) => {
                Ok(Started::Refused { why: format!("ARC: {}", r.message()) })
            }
            _ => Err(Error::aws("arc-zonal-shift", "StartZonalShift", SdkError::ServiceError(e))),
        },
        Err(e) => Err(Error::aws("arc-zonal-shift", "StartZonalShift", e)),
    }
}

/// Extends the evacuator's shift `id` by a new `expires_in` (from now).
pub async fn extend(arc: &aws_sdk_arczonalshift::Client, id: &str, expires_in: &str) -> Result<Option<DateTime<Utc>>> {
    let out = arc
        .update_zonal_shift()
        .zonal_shift_id(id)
        .expires_in(expires_in)
        .send()
        .await
        .map_err(|e| Error::aws("arc-zonal-shift", "UpdateZonalShift", e))?;
    Ok(time(out.expiry_time()))
}

/// Cancels the evacuator's shift `id`; `false` when it had already ended (expired or cancelled).
pub async fn cancel(arc: &aws_sdk_arczonalshift::Client, id: &str) -> Result<bool> {
    use aws_sdk_arczonalshift::operation::cancel_zonal_shift::CancelZonalShiftError;
    match arc.cancel_zonal_shift().zonal_shift_id(id).send().await {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), CancelZonalShiftError::ConflictException(c)
                if *c.reason() == ConflictExceptionReason::ZonalShiftStatusNotActive)
                || matches!(e.err(), CancelZonalShiftError::ResourceNotFoundException(_)) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::aws("arc-zonal-shift", "CancelZonalShift", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_told_apart_by_type_and_comment() {
        assert_eq!(owner(Some(&ShiftType::PracticeRun), ""), ShiftOwner::PracticeRun);
        assert_eq!(owner(Some(&ShiftType::FisExperiment), ""), ShiftOwner::FisExperiment);
        assert_eq!(owner(Some(&ShiftType::ZonalShift), &comment("evacuation:x")), ShiftOwner::Selfheal);
        assert_eq!(owner(Some(&ShiftType::ZonalShift), "ops: db maintenance"), ShiftOwner::Customer);
        assert_eq!(owner(None, "ops"), ShiftOwner::Customer);
        assert!(comment(&"x".repeat(300)).chars().count() <= 128);
    }
}
