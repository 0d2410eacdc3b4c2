//! The five capability sets of the container's process.

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability {0}")]
    Unknown(String),
    #[error("setting the {set} capability set: {source}")]
    Set {
        set: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
}

/// The sets the process ends up with.
#[derive(Debug, Clone, Default)]
pub struct CapabilitySets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

fn convert(
    set: Option<&std::collections::HashSet<oci_spec::runtime::Capability>>,
) -> Result<CapsHashSet, CapabilityError> {
    set.into_iter()
        .flatten()
        .map(|c| {
            let name = format!("CAP_{c}");
            name.parse::<Capability>()
                .map_err(|_| CapabilityError::Unknown(name))
        })
        .collect()
}

impl CapabilitySets {
    pub fn from_spec(spec: &LinuxCapabilities) -> Result<Self, CapabilityError> {
        Ok(Self {
            bounding: convert(spec.bounding().as_ref())?,
            effective: convert(spec.effective().as_ref())?,
            inheritable: convert(spec.inheritable().as_ref())?,
            permitted: convert(spec.permitted().as_ref())?,
            ambient: convert(spec.ambient().as_ref())?,
        })
    }

    /// Drops everything outside the bounding set. Needs CAP_SETPCAP, so it
    /// runs before the switch to the container's user.
    pub fn drop_bounding(&self) -> Result<(), CapabilityError> {
        let err = |source| CapabilityError::Set {
            set: "bounding",
            source,
        };
        for cap in caps::all() {
            if !self.bounding.contains(&cap)
                && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
            {
                caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Sets the inheritable, effective, permitted and ambient sets, after the
    /// switch to the container's user (with keep-caps set).
    pub fn apply(&self) -> Result<(), CapabilityError> {
        let set = |which: CapSet, name: &'static str, value: &CapsHashSet| {
            caps::set(None, which, value)
                .map_err(|source| CapabilityError::Set { set: name, source })
        };
        // Order matters: inheritable while CAP_SETPCAP is still effective;
        // effective before permitted shrinks below it.
        set(CapSet::Inheritable, "inheritable", &self.inheritable)?;
        set(CapSet::Effective, "effective", &self.effective)?;
        set(CapSet::Permitted, "permitted", &self.permitted)?;
        // An ambient capability needs to be both permitted and inheritable;
        // runc warns and goes on when the spec asks for one that is not.
        for cap in &self.ambient {
            if let Err(e) = caps::raise(None, CapSet::Ambient, *cap) {
                tracing::debug!(capability = %cap, error = %e, "cannot raise ambient capability");
            }
        }
        Ok(())
    }
}
