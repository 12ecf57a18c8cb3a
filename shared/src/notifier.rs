//! notifier (in progress)
use serde_json::Value;
pub struct Notifier;
impl Notifier {
    pub async fn from_env() -> crate::Result<Self> {
        Ok(Notifier)
    }
    pub async fn handle(&self, _payload: &Value) -> crate::Result<Value> {
        Ok(Value::Null)
    }
}
