//! garden's nftables table (family `inet`) and the batches that change it.
//! Every change is one `nft -j -f -` process: one atomic transaction.
//!
//! ```text
//! table inet <table>
//!   map egress  { ifname . ipv4_addr : verdict }      bridge . container IP -> jump c-<ip>
//!   map netin_ip   { inet_service : ipv4_addr }       host port -> container IP
//!   map netin_port { inet_service : inet_service }    host port -> container port
//!   chain forward     (filter, forward, 0)
//!     ct state established,related accept
//!     iifname . ip saddr vmap @egress                 the container's NetOut chain
//!     iifname "<bridge>*" drop                        unknown source, or nothing allowed it
//!     oifname "<bridge>*" ct status dnat accept       NetIn
//!     oifname "<bridge>*" drop                        anything else towards containers
//!   chain input       (filter, input, 0)              unless allow_host_access:
//!     iifname "<bridge>*" ct state established,related accept
//!     iifname "<bridge>*" drop                        the host's own services
//!   chain prerouting  (nat, prerouting, -100)  fib daddr type local
//!                       dnat ip to tcp dport map @netin_ip : tcp dport map @netin_port
//!   chain output      (nat, output, -100)      the same, for the host's own connections
//!   chain postrouting (nat, postrouting, 100)
//!     oifname "<bridge>*" ip saddr 127.0.0.0/8 masquerade         NetIn from the host's 127.0.0.1
//!     ip saddr <pool> ip daddr != <pool> masquerade               egress
//!   chain c-<container IP in hex>
//!     ip daddr <own subnet> accept                    shared subnets (bridged with br_netfilter)
//!     <one rule per NetOut rule>
//! ```
//!
//! (One `ip . port` map would do, but nft 1.0.6, Debian 12's, crashes on a
//! concatenated NAT map given as JSON.) Dispatch is by map lookup, so the cost of a packet or of a change does
//! not grow with the number of containers.

pub mod expr;

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::process::Stdio;

use garden_api::types::PortMapping;
use ipnet::Ipv4Net;
use nftables::expr::{Expression, Fib, FibFlag, FibResult, MetaKey, NamedExpression, Verdict};
use nftables::schema::SetType;
use nftables::schema::{
    Chain, Element, Map, NfCmd, NfListObject, NfObject, Nftables, Rule, SetTypeValue, Table,
};
use nftables::stmt::{JumpTarget, NATFamily, Statement, VerdictMap, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use tokio::io::AsyncWriteExt;

use self::expr::{
    accept, addr, concat, ct, drop, eq, is_in, meta, n, ne, payload, prefix, s, Stmt,
};
use crate::rules::CheckedRule;

const EGRESS_MAP: &str = "egress";
const NETIN_IP_MAP: &str = "netin_ip";
const NETIN_PORT_MAP: &str = "netin_port";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be run.
    #[error("cannot run nft (install the nftables package): {0}")]
    Spawn(std::io::Error),
    /// `nft` refused the transaction; nothing of it was applied.
    #[error("nft refused the transaction ({what}): {stderr}")]
    Refused {
        /// What the transaction was for.
        what: String,
        /// nft's message.
        stderr: String,
    },
}

/// One container's part of the table.
#[derive(Clone, Debug)]
pub struct ContainerRules<'a> {
    /// The container's chain.
    pub chain: String,
    /// The bridge its packets arrive on.
    pub bridge: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// Its NetIn mappings.
    pub net_in: &'a [PortMapping],
    /// Its NetOut rules.
    pub net_out: &'a [CheckedRule],
    /// The log prefix of its rules.
    pub log_prefix: &'a str,
}

/// The table's name and the settings its base chains depend on.
#[derive(Clone, Debug)]
pub struct TableSpec {
    /// The table's name.
    pub name: String,
    /// Prefix of our bridges' names.
    pub bridge_prefix: String,
    /// The container pool (masquerade).
    pub pool: Ipv4Net,
    /// Whether containers may reach the host.
    pub allow_host_access: bool,
}

/// The name of a container's chain.
pub fn chain_name(ip: Ipv4Addr) -> String {
    format!("c-{:08x}", u32::from(ip))
}

fn add(obj: NfListObject<'static>) -> NfObject<'static> {
    NfObject::CmdObject(NfCmd::Add(obj))
}

fn delete(obj: NfListObject<'static>) -> NfObject<'static> {
    NfObject::CmdObject(NfCmd::Delete(obj))
}

impl TableSpec {
    fn table(&self) -> NfListObject<'static> {
        NfListObject::Table(Table {
            family: NfFamily::INet,
            name: self.name.clone().into(),
            handle: None,
        })
    }

    fn chain(&self, name: &str) -> Chain<'static> {
        Chain {
            family: NfFamily::INet,
            table: self.name.clone().into(),
            name: name.to_owned().into(),
            ..Chain::default()
        }
    }

    fn base_chain(
        &self,
        name: &str,
        kind: NfChainType,
        hook: NfHook,
        prio: i32,
    ) -> NfObject<'static> {
        let chain = Chain {
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(NfChainPolicy::Accept),
            ..self.chain(name)
        };
        add(NfListObject::Chain(chain))
    }

    fn rule(&self, chain: &str, expr: Vec<Stmt>) -> NfObject<'static> {
        add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: self.name.clone().into(),
            chain: chain.to_owned().into(),
            expr: expr.into(),
            ..Rule::default()
        }))
    }

    fn map(
        &self,
        name: &str,
        key: SetTypeValue<'static>,
        value: SetTypeValue<'static>,
    ) -> NfObject<'static> {
        add(NfListObject::Map(Box::new(Map {
            family: NfFamily::INet,
            table: self.name.clone().into(),
            name: name.to_owned().into(),
            handle: None,
            set_type: key,
            map: value,
            policy: None,
            flags: None,
            elem: None,
            timeout: None,
            gc_interval: None,
            size: None,
            comment: None,
        })))
    }

    fn element(
        &self,
        map: &str,
        key: Expression<'static>,
        value: Expression<'static>,
    ) -> NfListObject<'static> {
        NfListObject::Element(Element {
            family: NfFamily::INet,
            table: self.name.clone().into(),
            name: map.to_owned().into(),
            elem: vec![Expression::List(vec![key, value])].into(),
        })
    }

    fn bridges(&self) -> expr::Expr {
        s(format!("{}*", self.bridge_prefix))
    }

    /// Replaces the whole table (whatever it held) with the base chains and
    /// maps: the first part of the batch `Network::open` applies.
    pub fn base_objects(&self) -> Batch {
        let mut batch = Batch::default();
        batch.extend([add(self.table()), delete(self.table()), add(self.table())]);
        // The nftables crate has no `verdict` map type: this one is raw JSON.
        batch.push_raw(serde_json::json!({"add": {"map": {
            "family": "inet", "table": self.name, "name": EGRESS_MAP,
            "type": ["ifname", "ipv4_addr"], "map": "verdict",
        }}}));
        let mut objects = Vec::new();
        let service = || SetTypeValue::Single(SetType::InetService);
        objects.push(self.map(
            NETIN_IP_MAP,
            service(),
            SetTypeValue::Single(SetType::Ipv4Addr),
        ));
        objects.push(self.map(NETIN_PORT_MAP, service(), service()));
        objects.extend(self.forward_chain());
        objects.extend(self.input_chain());
        objects.extend(self.nat_chains());
        batch.extend(objects);
        batch
    }

    fn forward_chain(&self) -> Vec<NfObject<'static>> {
        let established = || {
            is_in(
                ct("state"),
                Expression::List(vec![s("established"), s("related")]),
            )
        };
        let egress = Statement::VerdictMap(VerdictMap {
            key: concat(vec![meta(MetaKey::Iifname), payload("ip", "saddr")]),
            data: s(format!("@{EGRESS_MAP}")),
        });
        vec![
            self.base_chain("forward", NfChainType::Filter, NfHook::Forward, 0),
            self.rule("forward", vec![established(), accept()]),
            self.rule("forward", vec![egress]),
            self.rule(
                "forward",
                vec![eq(meta(MetaKey::Iifname), self.bridges()), drop()],
            ),
            self.rule(
                "forward",
                vec![
                    eq(meta(MetaKey::Oifname), self.bridges()),
                    is_in(ct("status"), s("dnat")),
                    accept(),
                ],
            ),
            self.rule(
                "forward",
                vec![eq(meta(MetaKey::Oifname), self.bridges()), drop()],
            ),
        ]
    }

    fn input_chain(&self) -> Vec<NfObject<'static>> {
        let mut objects = vec![self.base_chain("input", NfChainType::Filter, NfHook::Input, 0)];
        if !self.allow_host_access {
            let from_bridges = || eq(meta(MetaKey::Iifname), self.bridges());
            let established = is_in(
                ct("state"),
                Expression::List(vec![s("established"), s("related")]),
            );
            objects.push(self.rule("input", vec![from_bridges(), established, accept()]));
            objects.push(self.rule("input", vec![from_bridges(), drop()]));
        }
        objects
    }

    fn nat_chains(&self) -> Vec<NfObject<'static>> {
        let netin = || {
            let local = eq(
                Expression::Named(NamedExpression::Fib(Fib {
                    result: FibResult::Type,
                    flags: [FibFlag::Daddr].into_iter().collect(),
                })),
                s("local"),
            );
            let lookup = |map: &str| {
                Expression::Named(NamedExpression::Map(Box::new(nftables::expr::Map {
                    key: payload("tcp", "dport"),
                    data: s(format!("@{map}")),
                })))
            };
            let dnat = Statement::DNAT(Some(NAT {
                addr: Some(lookup(NETIN_IP_MAP)),
                family: Some(NATFamily::IP),
                port: Some(lookup(NETIN_PORT_MAP)),
                flags: None,
            }));
            vec![local, dnat]
        };
        let pool = || prefix(self.pool.network(), self.pool.prefix_len());
        vec![
            self.base_chain("prerouting", NfChainType::NAT, NfHook::Prerouting, -100),
            self.rule("prerouting", netin()),
            self.base_chain("output", NfChainType::NAT, NfHook::Output, -100),
            self.rule("output", netin()),
            self.base_chain("postrouting", NfChainType::NAT, NfHook::Postrouting, 100),
            self.rule(
                "postrouting",
                vec![
                    eq(meta(MetaKey::Oifname), self.bridges()),
                    eq(payload("ip", "saddr"), prefix(Ipv4Addr::LOCALHOST, 8)),
                    Statement::Masquerade(None),
                ],
            ),
            self.rule(
                "postrouting",
                vec![
                    eq(payload("ip", "saddr"), pool()),
                    ne(payload("ip", "daddr"), pool()),
                    Statement::Masquerade(None),
                ],
            ),
        ]
    }

    fn egress_key(&self, c: &ContainerRules<'_>) -> Expression<'static> {
        concat(vec![s(c.bridge.clone()), addr(c.ip)])
    }

    fn jump(chain: &str) -> Expression<'static> {
        Expression::Verdict(Verdict::Jump(JumpTarget {
            target: Cow::Owned(chain.to_owned()),
        }))
    }

    fn netin_elements(&self, ip: Ipv4Addr, mapping: PortMapping) -> [NfListObject<'static>; 2] {
        [
            self.element(NETIN_IP_MAP, n(mapping.host_port), addr(ip)),
            self.element(
                NETIN_PORT_MAP,
                n(mapping.host_port),
                n(mapping.container_port),
            ),
        ]
    }

    /// A container's chain with its rules, its egress dispatch element and
    /// its NetIn elements.
    pub fn container_objects(&self, c: &ContainerRules<'_>) -> Vec<NfObject<'static>> {
        let mut objects = vec![add(NfListObject::Chain(self.chain(&c.chain)))];
        let own_subnet = prefix(c.subnet.network(), c.subnet.prefix_len());
        objects.push(self.rule(
            &c.chain,
            vec![eq(payload("ip", "daddr"), own_subnet), accept()],
        ));
        objects.extend(self.net_out_objects(&c.chain, c.net_out, c.log_prefix));
        objects.push(add(self.element(
            EGRESS_MAP,
            self.egress_key(c),
            Self::jump(&c.chain),
        )));
        objects.extend(self.net_in_objects(c.ip, c.net_in));
        objects
    }

    /// Rules appended to a container's chain.
    pub fn net_out_objects(
        &self,
        chain: &str,
        rules: &[CheckedRule],
        log_prefix: &str,
    ) -> Vec<NfObject<'static>> {
        rules
            .iter()
            .map(|rule| self.rule(chain, rule.statements(log_prefix)))
            .collect()
    }

    /// NetIn elements for a container.
    pub fn net_in_objects(&self, ip: Ipv4Addr, mappings: &[PortMapping]) -> Vec<NfObject<'static>> {
        mappings
            .iter()
            .flat_map(|m| self.netin_elements(ip, *m))
            .map(add)
            .collect()
    }

    /// Removes everything of a container, whether or not it is all there:
    /// each object is added (a no-op when present) before it is deleted.
    pub fn remove_container_objects(&self, c: &ContainerRules<'_>) -> Vec<NfObject<'static>> {
        let chain = || NfListObject::Chain(self.chain(&c.chain));
        let egress = || self.element(EGRESS_MAP, self.egress_key(c), Self::jump(&c.chain));
        let mut objects = vec![add(chain()), add(egress()), delete(egress())];
        for mapping in c.net_in {
            for element in self.netin_elements(c.ip, *mapping) {
                objects.push(add(element.clone()));
                objects.push(delete(element));
            }
        }
        objects.push(NfObject::CmdObject(NfCmd::Flush(
            nftables::schema::FlushObject::Chain(self.chain(&c.chain)),
        )));
        objects.push(delete(chain()));
        objects
    }

    /// Deletes the whole table (fine when absent).
    pub fn drop_table_objects(&self) -> Vec<NfObject<'static>> {
        vec![add(self.table()), delete(self.table())]
    }
}

/// The commands of one transaction, as nft's JSON.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    commands: Vec<serde_json::Value>,
}

impl Batch {
    /// Appends a command.
    pub fn push(&mut self, command: NfObject<'static>) {
        let single = Nftables {
            objects: vec![command].into(),
        };
        let mut value = serde_json::to_value(single).expect("nft objects always serialize");
        if let Some(serde_json::Value::Array(mut list)) =
            value.get_mut("nftables").map(serde_json::Value::take)
        {
            self.commands.append(&mut list);
        }
    }

    /// Appends a command the nftables crate has no type for.
    fn push_raw(&mut self, command: serde_json::Value) {
        self.commands.push(command);
    }

    /// Appends commands.
    pub fn extend(&mut self, commands: impl IntoIterator<Item = NfObject<'static>>) {
        commands.into_iter().for_each(|c| self.push(c));
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

impl From<Vec<NfObject<'static>>> for Batch {
    fn from(commands: Vec<NfObject<'static>>) -> Self {
        let mut batch = Self::default();
        batch.extend(commands);
        batch
    }
}

/// Applies `batch` as one transaction; `what` names it in errors.
pub async fn apply(what: &str, batch: impl Into<Batch>) -> Result<(), NftError> {
    let batch = batch.into();
    if batch.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_vec(&serde_json::json!({ "nftables": batch.commands }))
        .expect("JSON values always serialize");
    let mut child = tokio::process::Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NftError::Spawn)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(&body).await;
    std::mem::drop(stdin);
    let output = child.wait_with_output().await.map_err(NftError::Spawn)?;
    if output.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if stderr.is_empty() {
        stderr = match written {
            Err(err) => format!("writing the batch failed: {err}"),
            Ok(()) => format!("exit status {}", output.status),
        };
    }
    Err(NftError::Refused {
        what: what.to_owned(),
        stderr,
    })
}
