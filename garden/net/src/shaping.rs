//! Garden's bandwidth limits: a token bucket filter (tc `tbf`) as the root
//! queue discipline of both veth ends, so the host side limits what the
//! container receives and the container side what it sends. A container
//! without CAP_NET_ADMIN (Garden's unprivileged default) cannot remove its
//! side. netlink-packet-route has no tbf type, so its two options are raw
//! netlink attributes laid out as `<linux/pkt_sched.h>` says.

use futures_util::StreamExt;
use garden_api::types::BandwidthLimits;
use rtnetlink::packet_core::{
    DefaultNla, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

/// `TCA_TBF_PARMS`: `struct tc_tbf_qopt`.
const TCA_TBF_PARMS: u16 = 1;
/// `TCA_TBF_RATE64`: the rate when it does not fit 32 bits.
const TCA_TBF_RATE64: u16 = 4;
/// `TCA_TBF_BURST`: the bucket size in bytes.
const TCA_TBF_BURST: u16 = 6;
/// `TC_LINKLAYER_ETHERNET`: the kernel computes times itself (no rate table).
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// How long a packet may wait in the queue (tc's usual `latency 25ms`).
const LATENCY_MS: u64 = 25;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ShapingError {
    /// A burst smaller than one packet would stop all traffic.
    #[error("bandwidth burst {burst} bytes is smaller than the MTU {mtu}: no packet could pass")]
    BurstBelowMtu {
        /// The burst asked for.
        burst: u64,
        /// The interfaces' MTU.
        mtu: u32,
    },
    /// A rate without a burst, or a burst without a rate.
    #[error("bandwidth needs both rate and burst (got rate {rate}, burst {burst})")]
    Incomplete {
        /// The rate asked for.
        rate: u64,
        /// The burst asked for.
        burst: u64,
    },
    /// The kernel refused the queue discipline.
    #[error("tbf on interface {index}: {source}")]
    Netlink {
        /// The interface index.
        index: u32,
        /// The kernel's answer.
        source: Box<rtnetlink::Error>,
    },
}

/// Whether `limits` asks for shaping at all; an error when half-given or
/// unusable with `mtu`.
pub fn check(limits: &BandwidthLimits, mtu: u32) -> Result<bool, ShapingError> {
    let (rate, burst) = (
        limits.rate_in_bytes_per_second,
        limits.burst_rate_in_bytes_per_second,
    );
    match (rate, burst) {
        (0, 0) => Ok(false),
        (0, _) | (_, 0) => Err(ShapingError::Incomplete { rate, burst }),
        (_, burst) if burst < u64::from(mtu) => Err(ShapingError::BurstBelowMtu { burst, mtu }),
        _ => Ok(true),
    }
}

/// The tbf options: `struct tc_tbf_qopt` (rate, peak rate, limit, buffer,
/// mtu), the burst, and the 64-bit rate when needed.
fn tbf_options(limits: &BandwidthLimits) -> Vec<TcOption> {
    let rate = limits.rate_in_bytes_per_second;
    let burst = u32::try_from(limits.burst_rate_in_bytes_per_second).unwrap_or(u32::MAX);
    let queue = rate.saturating_mul(LATENCY_MS) / 1000 + u64::from(burst);
    let mut qopt = Vec::with_capacity(36);
    // struct tc_ratespec rate: cell_log, linklayer, overhead, cell_align, mpu, rate.
    qopt.extend_from_slice(&[0, TC_LINKLAYER_ETHERNET]);
    qopt.extend_from_slice(&[0; 6]);
    qopt.extend_from_slice(&u32::try_from(rate).unwrap_or(u32::MAX).to_ne_bytes());
    // struct tc_ratespec peakrate: none.
    qopt.extend_from_slice(&[0; 12]);
    // limit (queue bytes), buffer (from TCA_TBF_BURST instead), mtu.
    qopt.extend_from_slice(&u32::try_from(queue).unwrap_or(u32::MAX).to_ne_bytes());
    qopt.extend_from_slice(&[0; 8]);
    let mut options = vec![
        TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, qopt)),
        TcOption::Other(DefaultNla::new(TCA_TBF_BURST, burst.to_ne_bytes().to_vec())),
    ];
    if rate > u64::from(u32::MAX) {
        options.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            rate.to_ne_bytes().to_vec(),
        )));
    }
    options
}

/// Makes (or replaces) the tbf root queue discipline of interface `index`.
pub async fn set_tbf(
    handle: &Handle,
    index: u32,
    limits: &BandwidthLimits,
) -> Result<(), ShapingError> {
    let netlink_err = |source| ShapingError::Netlink {
        index,
        source: Box::new(source),
    };
    let mut message = TcMessage::with_index(i32::try_from(index).unwrap_or(i32::MAX));
    message.header.parent = TcHandle::ROOT;
    message.attributes.push(TcAttribute::Kind("tbf".into()));
    message
        .attributes
        .push(TcAttribute::Options(tbf_options(limits)));
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(message));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut responses = handle.clone().request(request).map_err(netlink_err)?;
    while let Some(response) = responses.next().await {
        if let NetlinkPayload::Error(err) = response.payload {
            if err.code.is_some() {
                return Err(netlink_err(rtnetlink::Error::NetlinkError(err)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u64, burst: u64) -> BandwidthLimits {
        BandwidthLimits {
            rate_in_bytes_per_second: rate,
            burst_rate_in_bytes_per_second: burst,
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(!check(&limits(0, 0), 1500).expect("none"));
        assert!(check(&limits(1_000_000, 65536), 1500).expect("both"));
        assert!(matches!(
            check(&limits(1, 0), 1500),
            Err(ShapingError::Incomplete { .. })
        ));
        assert!(matches!(
            check(&limits(0, 1), 1500),
            Err(ShapingError::Incomplete { .. })
        ));
        let err = check(&limits(1_000_000, 1000), 1500).expect_err("burst below mtu");
        assert!(err.to_string().contains("smaller than the MTU"), "{err}");
    }

    #[test]
    fn qopt_is_laid_out_like_the_kernel_struct() {
        let options = tbf_options(&limits(1_000_000, 65536));
        assert_eq!(options.len(), 2, "no 64-bit rate for 1 MB/s");
        let big = tbf_options(&limits(5_000_000_000, 65536));
        assert_eq!(big.len(), 3);
    }
}
