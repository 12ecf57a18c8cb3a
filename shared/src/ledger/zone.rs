//! The zone evacuator's state: the per-AZ signals of each place ([`ZoneSignal`]) and each evacuation
//! ([`Evacuation`]: what it shifted, and the subnets and capacity it changed, so that its end restores
//! exactly those), plus a fleet-wide index of the evacuations in progress for the scheduled re-check.
//!
//! | item              | pk                          | sk                  |
//! |-------------------|-----------------------------|---------------------|
//! | signal            | `zone-signal#{place}`       | `{az name}#{source}`|
//! | evacuation        | `zone-evac#{place}`         | `{az name}`         |
//! | in-progress index | `zone-active` (fleet-wide)  | `{place}{az name}`  |
//!
//! Every decisive write is conditional: a signal older than the one stored does not overwrite it (out
//! of order deliveries), and of any number of invocations starting an evacuation of one AZ exactly one
//! creates it; the others read it back.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::{get_s, is_condition_failed, n, s, Item, Ledger};
use crate::error::{Error, Result};

/// One piece of evidence about one AZ of a place, from one source (an alarm, a Health event, the
/// healer's short-circuit, an operator).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSignal {
    /// The AZ's name in the place's account (`us-east-1a`).
    pub az: String,
    /// Stable per source: `alarm:<name>`, `health:<event arn>`, `healer:<group>`, `manual`.
    pub source: String,
    /// `true` while the source says the AZ is impaired; `false` once it says it is clear.
    pub impaired: bool,
    pub at: DateTime<Utc>,
    /// What the source said, for people.
    pub detail: String,
    /// The resource the signal is about (a load balancer's dimension, a group), when it has one.
    pub resource: Option<String>,
}

/// An evacuation of one AZ of a place, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Evacuation {
    pub az: String,
    pub az_id: String,
    /// The evacuation's id: the event id its actions are claimed under.
    pub id: String,
    pub active: bool,
    pub started_at: DateTime<Utc>,
    pub reason: String,
    /// Since when the AZ has been clear (no impairing signal), while the evacuation waits out its
    /// hysteresis; `None` while it is impaired.
    pub clear_since: Option<DateTime<Utc>>,
    /// Per resource (ARN or name): what the evacuation did to it, as JSON the evacuator wrote.
    pub resources: BTreeMap<String, String>,
}

/// One evacuation in progress somewhere in the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveEvacuation {
    pub account: Option<String>,
    pub region: Option<String>,
    pub az: String,
    pub id: String,
}

fn time(item: &Item, key: &str) -> Option<DateTime<Utc>> {
    get_s(item, key).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Ledger {
    /// Stores a signal unless a newer one from the same source is stored already.
    pub async fn record_signal(&self, sig: &ZoneSignal) -> Result<()> {
        let mut put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("zone-signal#{}", self.place)))
            .item("sk", s(format!("{}#{}", sig.az, sig.source)))
            .item("kind", s("zone-signal"))
            .item("az", s(&sig.az))
            .item("source", s(&sig.source))
            .item("impaired", AttributeValue::Bool(sig.impaired))
            .item("at", s(rfc(sig.at)))
            .item("detail", s(&sig.detail))
            .item("expires_at", n(self.expires_at(Utc::now())))
            .condition_expression("attribute_not_exists(pk) OR #at <= :at")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", s(rfc(sig.at)));
        if let Some(r) = &sig.resource {
            put = put.item("resource", s(r));
        }
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "PutItem", e))),
        }
    }

    /// Every signal stored for this place.
    pub async fn zone_signals(&self) -> Result<Vec<ZoneSignal>> {
        let items = self.query_pk(&format!("zone-signal#{}", self.place)).await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                Some(ZoneSignal {
                    az: get_s(i, "az")?.to_string(),
                    source: get_s(i, "source")?.to_string(),
                    impaired: i.get("impaired").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
                    at: time(i, "at")?,
                    detail: get_s(i, "detail").unwrap_or_default().to_string(),
                    resource: get_s(i, "resource").map(str::to_string),
                })
            })
            .collect())
    }

    /// Starts an evacuation of `az` unless one is in progress: `(evacuation, true)` when this call
    /// created it, `(the one in progress, false)` otherwise. `account`/`region` name the place for
    /// the fleet-wide index (`None` at home).
    pub async fn start_evacuation(
        &self,
        place: (Option<&str>, Option<&str>),
        az: &str,
        az_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(Evacuation, bool)> {
        let id = format!("evacuation:{az_id}:{}", uuid::Uuid::new_v4().simple());
        let res = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("zone-evac#{}", self.place)))
            .item("sk", s(az))
            .item("kind", s("zone-evacuation"))
            .item("az", s(az))
            .item("az_id", s(az_id))
            .item("id", s(&id))
            .item("status", s("active"))
            .item("started_at", s(rfc(now)))
            .item("reason", s(reason))
            .item("resources", AttributeValue::M(Default::default()))
            .item("expires_at", n(self.expires_at(now)))
            .condition_expression("attribute_not_exists(pk) OR #st = :ended")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":ended", s("ended"))
            .send()
            .await;
        match res {
            Ok(_) => {
                let mut index = self
                    .ddb
                    .put_item()
                    .table_name(&self.table)
                    .item("pk", s("zone-active"))
                    .item("sk", s(format!("{}{az}", self.place)))
                    .item("kind", s("zone-active"))
                    .item("az", s(az))
                    .item("id", s(&id))
                    .item("expires_at", n(self.expires_at(now)));
                if let Some(a) = place.0 {
                    index = index.item("account", s(a));
                }
                if let Some(r) = place.1 {
                    index = index.item("region", s(r));
                }
                index.send().await.map_err(|e| self.explain(Error::aws("dynamodb", "PutItem", e)))?;
                let evac = Evacuation {
                    az: az.to_string(),
                    az_id: az_id.to_string(),
                    id,
                    active: true,
                    started_at: now,
                    reason: reason.to_string(),
                    clear_since: None,
                    resources: BTreeMap::new(),
                };
                Ok((evac, true))
            }
            Err(e) if is_condition_failed(&e) => match self.evacuation(az).await? {
                Some(e) => Ok((e, false)),
                None => Err(Error::ActionFailed(format!("the evacuation of {az} vanished while starting it"))),
            },
            Err(e) => Err(self.explain(Error::aws("dynamodb", "PutItem", e))),
        }
    }

    /// The evacuation of `az` in this place, in progress or the last one ended.
    pub async fn evacuation(&self, az: &str) -> Result<Option<Evacuation>> {
        Ok(self.get(&format!("zone-evac#{}", self.place), az).await?.as_ref().and_then(Self::evacuation_of))
    }

    /// Every evacuation recorded for this place (in progress or ended).
    pub async fn evacuations(&self) -> Result<Vec<Evacuation>> {
        let items = self.query_pk(&format!("zone-evac#{}", self.place)).await?;
        Ok(items.iter().filter_map(Self::evacuation_of).collect())
    }

    fn evacuation_of(i: &Item) -> Option<Evacuation> {
        let resources = i
            .get("resources")
            .and_then(|v| v.as_m().ok())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone()))).collect())
            .unwrap_or_default();
        Some(Evacuation {
            az: get_s(i, "az")?.to_string(),
            az_id: get_s(i, "az_id")?.to_string(),
            id: get_s(i, "id")?.to_string(),
            active: get_s(i, "status") == Some("active"),
            started_at: time(i, "started_at")?,
            reason: get_s(i, "reason").unwrap_or_default().to_string(),
            clear_since: time(i, "clear_since"),
            resources,
        })
    }

    /// Records what the evacuation `id` did to `resource` (JSON), while it is in progress.
    pub async fn note_evacuated(&self, az: &str, id: &str, resource: &str, what: &str) -> Result<()> {
        self.update_evacuation(
            az,
            id,
            "SET #res.#r = :v",
            &[("#res", "resources"), ("#r", resource)],
            &[(":v", s(what))],
        )
        .await
    }

    /// Forgets what the evacuation did to `resource` (restored).
    pub async fn forget_evacuated(&self, az: &str, id: &str, resource: &str) -> Result<()> {
        self.update_evacuation(az, id, "REMOVE #res.#r", &[("#res", "resources"), ("#r", resource)], &[]).await
    }

    /// Sets (or clears, with `None`) since when the AZ has been clear.
    pub async fn set_clear_since(&self, az: &str, id: &str, since: Option<DateTime<Utc>>) -> Result<()> {
        match since {
            Some(t) => {
                self.update_evacuation(az, id, "SET #c = :c", &[("#c", "clear_since")], &[(":c", s(rfc(t)))]).await
            }
            None => self.update_evacuation(az, id, "REMOVE #c", &[("#c", "clear_since")], &[]).await,
        }
    }

    /// Ends the evacuation `id`; `false` when it was not in progress (another invocation ended it).
    pub async fn end_evacuation(&self, az: &str, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let res = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("zone-evac#{}", self.place)))
            .key("sk", s(az))
            .update_expression("SET #st = :ended, ended_at = :now")
            .condition_expression("id = :id AND #st = :active")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":ended", s("ended"))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":id", s(id))
            .expression_attribute_values(":now", s(rfc(now)))
            .send()
            .await;
        match res {
            Ok(_) => {
                self.ddb
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s("zone-active"))
                    .key("sk", s(format!("{}{az}", self.place)))
                    .send()
                    .await
                    .map_err(|e| self.explain(Error::aws("dynamodb", "DeleteItem", e)))?;
                Ok(true)
            }
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "UpdateItem", e))),
        }
    }

    /// Every evacuation in progress across the fleet (the scheduled re-check's list).
    pub async fn active_evacuations(&self) -> Result<Vec<ActiveEvacuation>> {
        let items = self.query_pk("zone-active").await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                Some(ActiveEvacuation {
                    account: get_s(i, "account").map(str::to_string),
                    region: get_s(i, "region").map(str::to_string),
                    az: get_s(i, "az")?.to_string(),
                    id: get_s(i, "id")?.to_string(),
                })
            })
            .collect())
    }

    async fn update_evacuation(
        &self,
        az: &str,
        id: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
    ) -> Result<()> {
        let mut u = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("zone-evac#{}", self.place)))
            .key("sk", s(az))
            .update_expression(expression)
            .condition_expression("id = :id")
            .expression_attribute_values(":id", s(id));
        for (k, v) in names {
            u = u.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            u = u.expression_attribute_values(*k, v.clone());
        }
        u.send().await.map_err(|e| {
            if is_condition_failed(&e) {
                Error::ActionFailed(format!("the evacuation {id} of {az} is no longer the one recorded"))
            } else {
                self.explain(Error::aws("dynamodb", "UpdateItem", e))
            }
        })?;
        Ok(())
    }

    async fn query_pk(&self, pk: &str) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut pages = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            out.push(item.map_err(|e| self.explain(Error::aws("dynamodb", "Query", e)))?);
        }
        Ok(out)
    }
}
