//! A serial source's tap settings: the line settings of the POS side and of the
//! printer (`passthrough`), as written ([`RawSerial`]) and validated
//! ([`SerialConfig`]), and back (what `check-config` prints).
//!
//! Invariants: errors name the key relative to the source (`baud: …`,
//! `passthrough.parity: …`); a passthrough inherits every setting it does not set
//! from the POS side.

use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serialport::{DataBits, FlowControl, Parity, StopBits};

/// Serial keys of a `kind = "serial"` source, as written in the config. Every
/// key but `device` has a default: 9600 8N1, no flow control, no passthrough.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSerial {
    pub device: Option<String>,
    /// Default 9600.
    #[serde(default)]
    pub baud: Option<u32>,
    /// 5, 6, 7 or 8; default 8.
    #[serde(default)]
    pub data_bits: Option<u8>,
    /// `none` (default), `odd`, `even`.
    #[serde(default)]
    pub parity: Option<String>,
    /// 1 (default) or 2.
    #[serde(default)]
    pub stop_bits: Option<u8>,
    /// `none` (default), `xonxoff`, `rtscts`.
    #[serde(default)]
    pub flow_control: Option<String>,
    /// The real printer: a device path (POS-side settings), or a table with
    /// `device` and any settings that differ.
    #[serde(default)]
    pub passthrough: Option<RawPassthrough>,
}

/// `passthrough = "/dev/ttyS1"` or `passthrough = { device = "/dev/ttyS1", baud = 19200 }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawPassthrough(pub Box<RawSerial>);

/// Printed as written most often: the plain path when nothing else is set.
impl Serialize for RawPassthrough {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let only_device = RawSerial {
            device: self.0.device.clone(),
            ..Default::default()
        };
        match &self.0.device {
            Some(d) if *self.0 == only_device => s.serialize_str(d),
            _ => self.0.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RawPassthrough {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPassthrough;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a device path or a table { device, baud, … }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawPassthrough, E> {
                Ok(RawPassthrough(Box::new(RawSerial {
                    device: Some(s.to_string()),
                    ..Default::default()
                })))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPassthrough, A::Error> {
                let raw = RawSerial::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if raw.passthrough.is_some() {
                    return Err(de::Error::custom(
                        "a passthrough has no passthrough of its own",
                    ));
                }
                Ok(RawPassthrough(Box::new(raw)))
            }
        }
        d.deserialize_any(V)
    }
}

/// One port's validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSettings {
    pub device: PathBuf,
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    pub flow_control: FlowControl,
}

/// A serial source's validated tap settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialConfig {
    pub pos: PortSettings,
    pub passthrough: Option<PortSettings>,
}

impl SerialConfig {
    /// The tap's keys as the file writes them, every default filled in; a
    /// passthrough shows only the settings that differ from the POS side's. An
    /// empty device (a disabled source that names none) is left out.
    pub fn raw(&self) -> RawSerial {
        let mut raw = port_raw(&self.pos, None);
        raw.passthrough = self
            .passthrough
            .as_ref()
            .map(|p| RawPassthrough(Box::new(port_raw(p, Some(&self.pos)))));
        raw
    }
}

/// One port's keys; with `inherit`, only those that differ from it.
fn port_raw(p: &PortSettings, inherit: Option<&PortSettings>) -> RawSerial {
    fn differs<T: PartialEq>(v: T, inherit: Option<T>) -> Option<T> {
        (inherit.as_ref() != Some(&v)).then_some(v)
    }
    let data_bits = |d: DataBits| match d {
        DataBits::Five => 5,
        DataBits::Six => 6,
        DataBits::Seven => 7,
        DataBits::Eight => 8,
    };
    let parity = |v: Parity| match v {
        Parity::None => "none",
        Parity::Odd => "odd",
        Parity::Even => "even",
    };
    let stop_bits = |v: StopBits| match v {
        StopBits::One => 1,
        StopBits::Two => 2,
    };
    let flow = |v: FlowControl| match v {
        FlowControl::None => "none",
        FlowControl::Software => "xonxoff",
        FlowControl::Hardware => "rtscts",
    };
    RawSerial {
        device: Some(p.device.to_string_lossy().into_owned()).filter(|d| !d.is_empty()),
        baud: differs(p.baud, inherit.map(|i| i.baud)),
        data_bits: differs(
            data_bits(p.data_bits),
            inherit.map(|i| data_bits(i.data_bits)),
        ),
        parity: differs(parity(p.parity), inherit.map(|i| parity(i.parity))).map(String::from),
        stop_bits: differs(
            stop_bits(p.stop_bits),
            inherit.map(|i| stop_bits(i.stop_bits)),
        ),
        flow_control: differs(flow(p.flow_control), inherit.map(|i| flow(i.flow_control)))
            .map(String::from),
        passthrough: None,
    }
}

impl RawSerial {
    /// Errors name the key relative to the source (`baud: …`,
    /// `passthrough.parity: …`).
    pub fn validate(self) -> Result<SerialConfig, String> {
        let pos = port(&self, None, "")?;
        let passthrough = match &self.passthrough {
            None => None,
            Some(RawPassthrough(p)) => Some(port(p, Some(&pos), "passthrough.")?),
        };
        if let Some(p) = &passthrough {
            if p.device == pos.device {
                return Err("passthrough.device: is the POS device itself".into());
            }
        }
        Ok(SerialConfig { pos, passthrough })
    }
}

impl RawSerial {
    /// [`RawSerial::validate`] for a source that is kept configured but not
    /// run (`enabled = false`): `device` may be missing, then it is an empty
    /// path, which nothing opens (the daemon skips disabled sources and
    /// `record` refuses an empty device). Every other key is checked as usual.
    pub fn validate_disabled(mut self) -> Result<SerialConfig, String> {
        let missing = self.device.as_deref().is_none_or(|d| d.trim().is_empty());
        if missing {
            self.device = Some("-".into());
        }
        let mut cfg = self.validate()?;
        if missing {
            cfg.pos.device = PathBuf::new();
        }
        Ok(cfg)
    }
}

/// Validates one port; unset keys come from `inherit` (the POS side) or the
/// defaults.
fn port(
    raw: &RawSerial,
    inherit: Option<&PortSettings>,
    prefix: &str,
) -> Result<PortSettings, String> {
    let device = match raw.device.as_deref().map(str::trim) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            return Err(format!(
                "{prefix}device: is required (the serial device path)"
            ));
        }
    };
    let baud = match raw.baud {
        Some(b) if !(50..=4_000_000).contains(&b) => {
            return Err(format!("{prefix}baud: must be 50 to 4000000, got {b}"));
        }
        Some(b) => b,
        None => inherit.map_or(9600, |p| p.baud),
    };
    let data_bits = match raw.data_bits {
        None => inherit.map_or(DataBits::Eight, |p| p.data_bits),
        Some(5) => DataBits::Five,
        Some(6) => DataBits::Six,
        Some(7) => DataBits::Seven,
        Some(8) => DataBits::Eight,
        Some(n) => return Err(format!("{prefix}data_bits: must be 5, 6, 7 or 8, got {n}")),
    };
    let parity = match raw.parity.as_deref() {
        None => inherit.map_or(Parity::None, |p| p.parity),
        Some("none") => Parity::None,
        Some("odd") => Parity::Odd,
        Some("even") => Parity::Even,
        Some(other) => {
            return Err(format!(
                "{prefix}parity: must be none, odd or even, got {other:?}"
            ));
        }
    };
    let stop_bits = match raw.stop_bits {
        None => inherit.map_or(StopBits::One, |p| p.stop_bits),
        Some(1) => StopBits::One,
        Some(2) => StopBits::Two,
        Some(n) => return Err(format!("{prefix}stop_bits: must be 1 or 2, got {n}")),
    };
    let flow_control = match raw.flow_control.as_deref() {
        None => inherit.map_or(FlowControl::None, |p| p.flow_control),
        Some("none") => FlowControl::None,
        Some("xonxoff") => FlowControl::Software,
        Some("rtscts") => FlowControl::Hardware,
        Some(other) => {
            return Err(format!(
                "{prefix}flow_control: must be none, xonxoff or rtscts, got {other:?}"
            ));
        }
    };
    Ok(PortSettings {
        device,
        baud,
        data_bits,
        parity,
        stop_bits,
        flow_control,
    })
}
