//! The stand-in's state and operations. Wire shapes follow `aws-sdk-arczonalshift`'s
//! `protocol_serde/shape_*.rs` (field names, epoch-second timestamps) and the success statuses its
//! `operation/*.rs` deserializers expect (201 for `StartZonalShift`, 200 for the rest).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::ArcRequest;

/// A zonal shift as the stand-in holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    pub zonal_shift_id: String,
    pub resource_identifier: String,
    pub away_from: String,
    pub start_time: DateTime<Utc>,
    pub expiry_time: DateTime<Utc>,
    /// `ACTIVE`, `EXPIRED` or `CANCELED`.
    pub status: String,
    pub comment: String,
    /// `ZONAL_SHIFT` (a customer's) or `PRACTICE_RUN`.
    pub shift_type: String,
    /// For practice runs: `PENDING` while active, `SUCCEEDED` once expired, `INTERRUPTED` when canceled.
    pub practice_run_outcome: Option<String>,
}

struct Resource {
    arn: String,
    name: String,
    /// `(name, id)`.
    azs: Vec<(String, String)>,
    autoshift_enabled: bool,
}

struct Autoshift {
    away_from: String,
    start_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub(super) struct State {
    resources: Vec<Resource>,
    shifts: Vec<Shift>,
    autoshifts: Vec<Autoshift>,
    offset: chrono::Duration,
    pub(super) lose: HashMap<String, u32>,
    pub(super) log: Vec<ArcRequest>,
}

/// An error answer: HTTP status, `x-amzn-errortype`, and the body's fields.
pub(super) struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub reason: Option<&'static str>,
    pub zonal_shift_id: Option<String>,
}

impl ApiError {
    pub(super) fn validation(reason: Option<&'static str>, message: &str) -> Self {
        ApiError { status: 400, code: "ValidationException", message: message.into(), reason, zonal_shift_id: None }
    }
    fn not_found(message: String) -> Self {
        ApiError { status: 404, code: "ResourceNotFoundException", message, reason: None, zonal_shift_id: None }
    }
    fn conflict(reason: &'static str, id: &str, message: &str) -> Self {
        let id = (!id.is_empty()).then(|| id.to_string());
        ApiError {
            status: 409,
            code: "ConflictException",
            message: message.into(),
            reason: Some(reason),
            zonal_shift_id: id,
        }
    }
}

type Answer = Result<(u16, Value), ApiError>;

fn ts(t: DateTime<Utc>) -> Value {
    json!(t.timestamp_millis() as f64 / 1000.0)
}

/// `expiresIn`: a whole number (no leading zero) then `m` or `h`, from 1 minute to 72 hours.
pub(super) fn parse_expires_in(s: &str) -> Option<chrono::Duration> {
    let (digits, per) = match (s.strip_suffix('m'), s.strip_suffix('h')) {
        (Some(d), _) => (d, 1),
        (_, Some(d)) => (d, 60),
        _ => return None,
    };
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let minutes = digits.parse::<i64>().ok()?.checked_mul(per)?;
    (1..=72 * 60).contains(&minutes).then(|| chrono::Duration::minutes(minutes))
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::validation(None, "The request body is not a JSON object.")),
    }
}

fn opt_str(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(None, &format!("{key} must be a string."))),
    }
}

fn req_str(body: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    opt_str(body, key)?.ok_or_else(|| ApiError::validation(Some("MissingValue"), &format!("{key} is required.")))
}

fn check_comment(c: &str) -> Result<(), ApiError> {
    if c.chars().count() > 128 {
        return Err(ApiError::validation(None, "comment must be at most 128 characters."));
    }
    Ok(())
}

fn expires_in(s: &str) -> Result<chrono::Duration, ApiError> {
    parse_expires_in(s).ok_or_else(|| {
        let msg = format!("expiresIn {s:?} must be a whole number of minutes (m) or hours (h), at most 72 hours.");
        ApiError::validation(Some("InvalidExpiresIn"), &msg)
    })
}

fn query<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// One page of `items` after `nextToken` (an offset), at most `maxResults` (1..=100) long.
fn page(items: Vec<Value>, q: &[(String, String)]) -> Answer {
    let max = match query(q, "maxResults") {
        None => 100,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return Err(ApiError::validation(None, "maxResults must be between 1 and 100.")),
        },
    };
    let from = match query(q, "nextToken") {
        None => 0,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n <= items.len() => n,
            _ => return Err(ApiError::validation(Some("InvalidToken"), "The nextToken is not valid.")),
        },
    };
    let to = (from + max).min(items.len());
    let mut out = json!({"items": items[from..to].to_vec()});
    if to < items.len() {
        out["nextToken"] = json!(to.to_string());
    }
    Ok((200, out))
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.offset += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
    }

    pub(super) fn rewind(&mut self, by: Duration) {
        self.offset -= chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
    }

    /// Shifts past their expiry become `EXPIRED` (a practice run that ran its course `SUCCEEDED`).
    fn refresh(&mut self) {
        let now = self.now();
        for s in self.shifts.iter_mut().filter(|s| s.status == "ACTIVE" && s.expiry_time <= now) {
            s.status = "EXPIRED".into();
            if s.practice_run_outcome.as_deref() == Some("PENDING") {
                s.practice_run_outcome = Some("SUCCEEDED".into());
            }
        }
    }

    pub(super) fn snapshot(&mut self) -> Vec<Shift> {
        self.refresh();
        self.shifts.clone()
    }

    pub(super) fn register(&mut self, arn: &str, name: &str, azs: Vec<(String, String)>, autoshift_enabled: bool) {
        self.resources.retain(|r| r.arn != arn);
        self.resources.push(Resource { arn: arn.into(), name: name.into(), azs, autoshift_enabled });
    }

    pub(super) fn start_autoshift(&mut self, az: &str) {
        if !self.autoshifts.iter().any(|a| a.away_from == az && a.end_time.is_none()) {
            let start_time = self.now();
            self.autoshifts.push(Autoshift { away_from: az.into(), start_time, end_time: None });
        }
    }

    pub(super) fn end_autoshift(&mut self, az: &str) {
        let now = self.now();
        for a in self.autoshifts.iter_mut().filter(|a| a.away_from == az && a.end_time.is_none()) {
            a.end_time = Some(now);
        }
    }

    pub(super) fn start_practice_run(&mut self, arn: &str, az: &str) -> Result<String, String> {
        self.refresh();
        self.practice_run(arn, az, "Zonal autoshift practice run")
            .map(|s| s.zonal_shift_id)
            .map_err(|e| format!("{} ({}): {}", e.code, e.reason.unwrap_or("-"), e.message))
    }

    /// Starts a practice run (a 30-minute `PRACTICE_RUN` zonal shift) on `arn` away from `az`, as ARC
    /// refuses one: a resource it does not manage, an AZ the resource is not in, no practice run
    /// configuration (autoshift not enabled), or another shift in effect.
    fn practice_run(&mut self, arn: &str, az: &str, comment: &str) -> Result<Shift, ApiError> {
        let r = self.resource(arn)?;
        if !r.azs.iter().any(|(_, id)| id == az) {
            let msg = format!("{az} is not an Availability Zone ID the resource is deployed in.");
            return Err(ApiError::validation(Some("InvalidAz"), &msg));
        }
        if !r.autoshift_enabled {
            let msg = "The resource has no practice run configuration.";
            return Err(ApiError::conflict("PracticeConfigurationDoesNotExist", "", msg));
        }
        match self.in_effect(r) {
            Some(Ok(id)) => {
                let msg = "A zonal shift is already active for this resource.";
                return Err(ApiError::conflict("ZonalShiftAlreadyExists", &id, msg));
            }
            Some(Err(_)) => {
                let msg = "A zonal autoshift is active for this resource.";
                return Err(ApiError::conflict("ZonalAutoshiftActive", "", msg));
            }
            None => {}
        }
        let now = self.now();
        let shift = Shift {
            zonal_shift_id: uuid::Uuid::new_v4().to_string(),
            resource_identifier: arn.into(),
            away_from: az.into(),
            start_time: now,
            expiry_time: now + chrono::Duration::minutes(30),
            status: "ACTIVE".into(),
            comment: comment.into(),
            shift_type: "PRACTICE_RUN".into(),
            practice_run_outcome: Some("PENDING".into()),
        };
        self.shifts.push(shift.clone());
        Ok(shift)
    }

    /// `StartPracticeRun` (POST /practiceruns, 200): the `StartPracticeRunOutput` shape, a zonal shift
    /// without its type.
    fn start_practice_run_api(&mut self, body: &[u8]) -> Answer {
        let b = body_object(body)?;
        let (arn, away, comment) =
            (req_str(&b, "resourceIdentifier")?, req_str(&b, "awayFrom")?, req_str(&b, "comment")?);
        check_comment(&comment)?;
        let shift = self.practice_run(&arn, &away, &comment)?;
        Ok((200, shift_json(&shift, false)))
    }

    fn active_autoshifts<'a>(&'a self, r: &'a Resource) -> impl Iterator<Item = &'a Autoshift> + 'a {
        self.autoshifts.iter().filter(move |a| {
            r.autoshift_enabled && a.end_time.is_none() && r.azs.iter().any(|(_, id)| *id == a.away_from)
        })
    }

    /// What is shifting `r`'s traffic, by ARC's precedence: a customer's zonal shift, then an autoshift,
    /// then a practice run. `Ok(shift id)` or `Err(autoshift AZ)`.
    fn in_effect(&self, r: &Resource) -> Option<Result<String, String>> {
        let active = |t: &str| {
            self.shifts.iter().find(|s| s.resource_identifier == r.arn && s.status == "ACTIVE" && s.shift_type == t)
        };
        if let Some(s) = active("ZONAL_SHIFT") {
            return Some(Ok(s.zonal_shift_id.clone()));
        }
        if let Some(a) = self.active_autoshifts(r).next() {
            return Some(Err(a.away_from.clone()));
        }
        active("PRACTICE_RUN").map(|s| Ok(s.zonal_shift_id.clone()))
    }

    /// A resource as `GetManagedResource` answers and `ListManagedResources` lists (`summary`).
    fn resource_json(&self, r: &Resource, summary: bool) -> Value {
        let effect = self.in_effect(r);
        let away = match &effect {
            Some(Ok(id)) => self.shifts.iter().find(|s| &s.zonal_shift_id == id).map(|s| s.away_from.clone()),
            Some(Err(az)) => Some(az.clone()),
            None => None,
        };
        let weights: Map<String, Value> = r
            .azs
            .iter()
            .map(|(_, id)| (id.clone(), json!(if away.as_ref() == Some(id) { 0.0 } else { 1.0 })))
            .collect();
        let applied = |yes: bool| if yes { "APPLIED" } else { "NOT_APPLIED" };
        let shifts: Vec<Value> = self
            .shifts
            .iter()
            .filter(|s| s.resource_identifier == r.arn && s.status == "ACTIVE")
            .map(|s| {
                let mut v = shift_json(s, true);
                v["appliedStatus"] = json!(applied(effect == Some(Ok(s.zonal_shift_id.clone()))));
                if let Some(o) = v.as_object_mut() {
                    o.remove("status");
                }
                v
            })
            .collect();
        let autoshifts: Vec<Value> = self
            .active_autoshifts(r)
            .map(|a| {
                json!({"appliedStatus": applied(effect == Some(Err(a.away_from.clone()))),
                       "awayFrom": a.away_from, "startTime": ts(a.start_time)})
            })
            .collect();
        let status = if r.autoshift_enabled { "ENABLED" } else { "DISABLED" };
        let mut v = json!({
            "arn": r.arn, "name": r.name, "appliedWeights": weights, "zonalShifts": shifts,
            "autoshifts": autoshifts, "zonalAutoshiftStatus": status,
        });
        if summary {
            v["availabilityZones"] = json!(r.azs.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>());
            v["practiceRunStatus"] = json!(status);
        } else if r.autoshift_enabled {
            let account = r.arn.split(':').nth(4).filter(|a| !a.is_empty()).unwrap_or("123456789012");
            let alarm = format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{}-practice-outcome", r.name);
            v["practiceRunConfiguration"] =
                json!({"outcomeAlarms": [{"type": "CLOUDWATCH", "alarmIdentifier": alarm}]});
        }
        v
    }

    /// Routes a request; returns the operation's name and the answer.
    pub(super) fn handle(
        &mut self,
        method: &str,
        segments: &[String],
        q: &[(String, String)],
        body: &[u8],
    ) -> (&'static str, Answer) {
        self.refresh();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (method, seg.as_slice()) {
            ("POST", ["zonalshifts"]) => ("StartZonalShift", self.start_zonal_shift(body)),
            ("GET", ["zonalshifts"]) => ("ListZonalShifts", self.list_zonal_shifts(q)),
            ("POST", ["practiceruns"]) => ("StartPracticeRun", self.start_practice_run_api(body)),
            ("PATCH", ["zonalshifts", id]) => ("UpdateZonalShift", self.update_zonal_shift(id, body)),
            ("DELETE", ["zonalshifts", id]) => ("CancelZonalShift", self.cancel_zonal_shift(id)),
            ("GET", ["managedresources"]) => {
                let items = self.resources.iter().map(|r| self.resource_json(r, true)).collect();
                ("ListManagedResources", page(items, q))
            }
            ("GET", ["managedresources", arn]) => ("GetManagedResource", self.get_managed_resource(arn)),
            ("GET", ["autoshifts"]) => ("ListAutoshifts", self.list_autoshifts(q)),
            // The stand-in's own administration, outside ARC's API (no SDK operation has this path).
            ("POST", ["_standin", "register"]) => ("StandInRegister", self.admin_register(body)),
            _ => {
                let e = ApiError {
                    status: 404,
                    code: "UnknownOperationException",
                    message: format!("No operation for {method} /{}", seg.join("/")),
                    reason: None,
                    zonal_shift_id: None,
                };
                ("Unknown", Err(e))
            }
        }
    }

    /// `POST /_standin/register` with `{"arn", "name", "azs": [[name, id], ...], "autoshift": bool}`: what
    /// ARC learns by itself of the resources in an account (the game day's provisioning registers its
    /// load balancer and groups this way, since the stand-in has no ELB or Auto Scaling to look at).
    fn admin_register(&mut self, body: &[u8]) -> Answer {
        let b = body_object(body)?;
        let (arn, name) = (req_str(&b, "arn")?, req_str(&b, "name")?);
        if !arn.starts_with("arn:") {
            return Err(ApiError::validation(Some("InvalidResourceIdentifier"), "arn must be an ARN."));
        }
        let bad = || ApiError::validation(None, "azs must be a list of [AZ name, AZ ID] pairs.");
        let azs = match b.get("azs") {
            Some(Value::Array(pairs)) if !pairs.is_empty() => pairs
                .iter()
                .map(|p| match p.as_array().map(Vec::as_slice) {
                    Some([Value::String(n), Value::String(i)]) if !n.is_empty() && !i.is_empty() => {
                        Ok((n.clone(), i.clone()))
                    }
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(bad()),
        };
        let autoshift = match b.get("autoshift") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(v)) => *v,
            Some(_) => return Err(ApiError::validation(None, "autoshift must be a boolean.")),
        };
        self.register(&arn, &name, azs, autoshift);
        Ok((200, json!({"registered": arn})))
    }

    fn resource(&self, arn: &str) -> Result<&Resource, ApiError> {
        if arn.len() < 8 || arn.len() > 1024 || !arn.starts_with("arn:") {
            return Err(ApiError::validation(
                Some("InvalidResourceIdentifier"),
                "The resource identifier is not an ARN.",
            ));
        }
        self.resources
            .iter()
            .find(|r| r.arn == arn)
            .ok_or_else(|| ApiError::not_found(format!("The resource {arn} is not a managed resource.")))
    }

    fn start_zonal_shift(&mut self, body: &[u8]) -> Answer {
        let b = body_object(body)?;
        let (arn, away, exp, comment) = (
            req_str(&b, "resourceIdentifier")?,
            req_str(&b, "awayFrom")?,
            req_str(&b, "expiresIn")?,
            req_str(&b, "comment")?,
        );
        check_comment(&comment)?;
        let duration = expires_in(&exp)?;
        let r = self.resource(&arn)?;
        if !r.azs.iter().any(|(_, id)| *id == away) {
            let msg = format!("{away} is not an Availability Zone ID the resource is deployed in.");
            return Err(ApiError::validation(Some("InvalidAz"), &msg));
        }
        let existing = self
            .shifts
            .iter()
            .find(|s| s.resource_identifier == arn && s.status == "ACTIVE" && s.shift_type == "ZONAL_SHIFT");
        if let Some(s) = existing {
            let msg = "A zonal shift is already active for this resource.";
            return Err(ApiError::conflict("ZonalShiftAlreadyExists", &s.zonal_shift_id, msg));
        }
        // A customer's zonal shift interrupts a practice run on the resource.
        for s in self
            .shifts
            .iter_mut()
            .filter(|s| s.resource_identifier == arn && s.status == "ACTIVE" && s.shift_type == "PRACTICE_RUN")
        {
            s.status = "CANCELED".into();
            s.practice_run_outcome = Some("INTERRUPTED".into());
        }
        let now = self.now();
        let shift = Shift {
            zonal_shift_id: uuid::Uuid::new_v4().to_string(),
            resource_identifier: arn,
            away_from: away,
            start_time: now,
            expiry_time: now + duration,
            status: "ACTIVE".into(),
            comment,
            shift_type: "ZONAL_SHIFT".into(),
            practice_run_outcome: None,
        };
        let out = shift_json(&shift, false);
        self.shifts.push(shift);
        Ok((201, out))
    }

    fn shift_mut(&mut self, id: &str) -> Result<&mut Shift, ApiError> {
        let s = self.shifts.iter_mut().find(|s| s.zonal_shift_id == id);
        let s = s.ok_or_else(|| ApiError::not_found(format!("The zonal shift {id} does not exist.")))?;
        if s.status != "ACTIVE" {
            let msg = format!("The zonal shift is {}, not ACTIVE.", s.status);
            return Err(ApiError::conflict("ZonalShiftStatusNotActive", id, &msg));
        }
        Ok(s)
    }

    fn update_zonal_shift(&mut self, id: &str, body: &[u8]) -> Answer {
        let b = body_object(body)?;
        let (comment, exp) = (opt_str(&b, "comment")?, opt_str(&b, "expiresIn")?);
        if comment.is_none() && exp.is_none() {
            return Err(ApiError::validation(Some("MissingValue"), "Give a comment, an expiresIn, or both."));
        }
        if let Some(c) = &comment {
            check_comment(c)?;
        }
        let expiry = exp.as_deref().map(expires_in).transpose()?.map(|d| self.now() + d);
        let s = self.shift_mut(id)?;
        if let Some(c) = comment {
            s.comment = c;
        }
        if let Some(e) = expiry {
            s.expiry_time = e;
        }
        Ok((200, shift_json(s, false)))
    }

    fn cancel_zonal_shift(&mut self, id: &str) -> Answer {
        let s = self.shift_mut(id)?;
        s.status = "CANCELED".into();
        if s.practice_run_outcome.is_some() {
            s.practice_run_outcome = Some("INTERRUPTED".into());
        }
        Ok((200, shift_json(s, false)))
    }

    fn list_zonal_shifts(&self, q: &[(String, String)]) -> Answer {
        let status = query(q, "status");
        if status.is_some_and(|s| !["ACTIVE", "EXPIRED", "CANCELED"].contains(&s)) {
            return Err(ApiError::validation(Some("InvalidStatus"), "status must be ACTIVE, EXPIRED or CANCELED."));
        }
        let resource = query(q, "resourceIdentifier");
        let items = self
            .shifts
            .iter()
            .filter(|s| status.is_none_or(|st| s.status == st))
            .filter(|s| resource.is_none_or(|r| s.resource_identifier == r))
            .map(|s| shift_json(s, true))
            .collect();
        page(items, q)
    }

    fn get_managed_resource(&self, arn: &str) -> Answer {
        Ok((200, self.resource_json(self.resource(arn)?, false)))
    }

    fn list_autoshifts(&self, q: &[(String, String)]) -> Answer {
        let status = query(q, "status");
        if status.is_some_and(|s| !["ACTIVE", "COMPLETED"].contains(&s)) {
            return Err(ApiError::validation(Some("InvalidStatus"), "status must be ACTIVE or COMPLETED."));
        }
        let items = self
            .autoshifts
            .iter()
            .map(|a| {
                let st = if a.end_time.is_some() { "COMPLETED" } else { "ACTIVE" };
                let mut v = json!({"awayFrom": a.away_from, "startTime": ts(a.start_time), "status": st});
                if let Some(end) = a.end_time {
                    v["endTime"] = ts(end);
                }
                v
            })
            .filter(|v| status.is_none_or(|s| v["status"] == s))
            .collect();
        page(items, q)
    }
}

/// A shift as Start/Update/Cancel answer it; `typed` adds `shiftType` and `practiceRunOutcome` (the
/// `ZonalShiftSummary` and `ZonalShiftInResource` shapes).
fn shift_json(s: &Shift, typed: bool) -> Value {
    let mut v = json!({
        "zonalShiftId": s.zonal_shift_id, "resourceIdentifier": s.resource_identifier, "awayFrom": s.away_from,
        "expiryTime": ts(s.expiry_time), "startTime": ts(s.start_time), "status": s.status, "comment": s.comment,
    });
    if typed {
        v["shiftType"] = json!(s.shift_type);
        if let Some(o) = &s.practice_run_outcome {
            v["practiceRunOutcome"] = json!(o);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::parse_expires_in;

    #[test]
    fn expires_in_is_whole_minutes_or_hours_up_to_three_days() {
        let mins = |s: &str| parse_expires_in(s).map(|d| d.num_minutes());
        assert_eq!(mins("1m"), Some(1));
        assert_eq!(mins("30m"), Some(30));
        assert_eq!(mins("1h"), Some(60));
        assert_eq!(mins("72h"), Some(4320));
        assert_eq!(mins("4320m"), Some(4320));
        for bad in [
            "",
            "m",
            "h",
            "0m",
            "05m",
            "73h",
            "4321m",
            "30",
            "1d",
            "1h30m",
            "-1h",
            "+1h",
            " 1h",
            "1H",
            "9999999999999999999h",
            "é",
        ] {
            assert_eq!(mins(bad), None, "{bad:?}");
        }
    }
}
