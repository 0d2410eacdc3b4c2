//! Short constructors for the nftables JSON expressions and statements this
//! crate uses, so rule code reads like nft's own syntax.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem, CT,
};
use nftables::stmt::{Match, Operator, Statement};

/// An owned expression.
pub type Expr = Expression<'static>;
/// An owned statement.
pub type Stmt = Statement<'static>;

/// A string immediate (interface names, keywords, wildcards like `gb-*`).
pub fn s(value: impl Into<String>) -> Expr {
    Expression::String(Cow::Owned(value.into()))
}

/// A number immediate.
pub fn n(value: u32) -> Expr {
    Expression::Number(value)
}

/// An IPv4 address immediate.
pub fn addr(ip: Ipv4Addr) -> Expr {
    s(ip.to_string())
}

/// `addr/len`.
pub fn prefix(ip: Ipv4Addr, len: u8) -> Expr {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(addr(ip)),
        len: u32::from(len),
    }))
}

/// `low-high`.
pub fn range(low: Expr, high: Expr) -> Expr {
    Expression::Range(Box::new(nftables::expr::Range { range: [low, high] }))
}

/// An anonymous set `{ a, b-c }`.
pub fn set(items: Vec<Expr>) -> Expr {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

/// `a . b`.
pub fn concat(items: Vec<Expr>) -> Expr {
    Expression::Named(NamedExpression::Concat(items))
}

/// A header field, e.g. `payload("tcp", "dport")`.
pub fn payload(protocol: &'static str, field: &'static str) -> Expr {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

/// `meta <key>`.
pub fn meta(key: MetaKey) -> Expr {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

/// `ct <key>`.
pub fn ct(key: &'static str) -> Expr {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

/// `left == right` (for sets and prefixes: membership).
pub fn eq(left: Expr, right: Expr) -> Stmt {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// `left != right`.
pub fn ne(left: Expr, right: Expr) -> Stmt {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

/// `left in right` (flag tests such as `ct state established,related`).
pub fn is_in(left: Expr, right: Expr) -> Stmt {
    Statement::Match(Match {
        left,
        right,
        op: Operator::IN,
    })
}

/// `accept`.
pub fn accept() -> Stmt {
    Statement::Accept(None)
}

/// `drop`.
pub fn drop() -> Stmt {
    Statement::Drop(None)
}
