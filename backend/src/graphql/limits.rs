//! What one request may ask for, checked on the parsed document before anything runs.
//!
//! async-graphql's own depth and complexity limits count every field as 1 and include introspection, so
//! they refuse the standard introspection query (GraphiQL's docs, codegen) while letting
//! `offers(first: 100) { uptime { spans } }` under 140 aliases through. Here instead:
//!
//! - **Cost**: a field costs 1, a field that runs its own database query costs more (`DB_FIELDS`), and a
//!   list's selection is multiplied by its `first` (or by the most the server returns when it has none).
//! - **Shape**: a depth limit, at most `MAX_ROOT_FIELDS` root fields and `MAX_ALIASES` aliases per request,
//!   and at most one password-hashing mutation (Argon2, 19 MiB each) per request, so aliased `signUp` x50 is
//!   refused before any hashing.
//! - **Introspection** (`__schema`, `__type`) is bounded on its own terms: its size is the schema's, so it
//!   costs nothing, but it may nest at most `MAX_INTROSPECTION_DEPTH` and appear at most twice.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Value, Variables};
use std::collections::HashMap;
use std::sync::Arc;

pub const MAX_DEPTH: usize = 10;
pub const MAX_COST: u64 = 5_000;
pub const MAX_ROOT_FIELDS: usize = 20;
pub const MAX_ALIASES: usize = 30;
const MAX_INTROSPECTION_DEPTH: usize = 20;
const MAX_INTROSPECTION_FIELDS: usize = 2;

/// Fields that run a database query of their own for each parent, and their weight.
const DB_FIELDS: &[(&str, u64)] = &[
    ("uptime", 10),
    ("earnings", 10),
    ("platformEarnings", 10),
    ("sshKeys", 5),
    ("payment", 5),
    ("provisioning", 5),
];

/// Lists without a `first` argument, and how many items they return at most.
const UNPAGED_LISTS: &[(&str, u64)] = &[
    ("spans", 50),
    ("orders", 100),
    ("listings", 200),
    ("marketplaces", 10),
    ("sshKeys", 20),
    ("earnings", 10),
    ("platformEarnings", 10),
];

/// The most any paged list returns (its `first` is capped to this).
const MAX_PAGE: u64 = 100;

/// Mutations that hash a password with Argon2.
const PASSWORD_MUTATIONS: &[&str] = &["signUp", "logIn", "changePassword"];

pub struct Limits;

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Limits)
    }
}

#[async_trait::async_trait]
impl Extension for Limits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        check(&document, variables).map_err(|message| {
            let mut e = ServerError::new(message, None);
            let mut ext = async_graphql::ErrorExtensionValues::default();
            ext.set("code", "BAD_USER_INPUT");
            e.extensions = Some(ext);
            e
        })?;
        Ok(document)
    }
}

struct Walk<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
    aliases: usize,
    /// Whether walking counts aliases: the root and depth passes do, the cost pass (which walks the same
    /// fields again) does not.
    counting: bool,
}

/// Why a document is refused, if it is.
pub fn check(document: &ExecutableDocument, variables: &Variables) -> Result<(), String> {
    let mut walk = Walk {
        fragments: &document.fragments,
        variables,
        aliases: 0,
        counting: true,
    };
    let operations: Vec<_> = match &document.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values().collect(),
    };
    for op in operations {
        let mut roots = Vec::new();
        walk.fields(&op.node.selection_set.node, &mut Vec::new(), &mut roots)?;
        let hashing = roots
            .iter()
            .filter(|f| PASSWORD_MUTATIONS.contains(&f.name.node.as_str()))
            .count();
        if hashing > 1 {
            return Err(format!(
                "Query asks for {hashing} sign-ups, log-ins or password changes; one per request"
            ));
        }
        if roots.len() > MAX_ROOT_FIELDS {
            return Err(format!(
                "Query has {} root fields; at most {MAX_ROOT_FIELDS} per request",
                roots.len()
            ));
        }
        let introspection = roots
            .iter()
            .filter(|f| f.name.node.starts_with("__") && f.name.node != "__typename")
            .count();
        if introspection > MAX_INTROSPECTION_FIELDS {
            return Err(format!(
                "Query asks for the schema {introspection} times; at most {MAX_INTROSPECTION_FIELDS}"
            ));
        }
        let mut cost = 0u64;
        for field in roots {
            let introspecting = field.name.node.starts_with("__");
            let depth = walk.depth(field, &mut Vec::new())?;
            if introspecting {
                if depth > MAX_INTROSPECTION_DEPTH {
                    return Err(format!(
                        "Query is nested too deep: introspection depth {depth}, at most {MAX_INTROSPECTION_DEPTH}"
                    ));
                }
                continue;
            }
            if depth > MAX_DEPTH {
                return Err(format!(
                    "Query is nested too deep: depth {depth}, at most {MAX_DEPTH}"
                ));
            }
            walk.counting = false;
            let field_cost = walk.cost(field, &mut Vec::new());
            walk.counting = true;
            cost = cost.saturating_add(field_cost?);
        }
        if walk.aliases > MAX_ALIASES {
            return Err(format!(
                "Query uses {} aliases; at most {MAX_ALIASES} per request",
                walk.aliases
            ));
        }
        if cost > MAX_COST {
            return Err(format!(
                "Query is too expensive: cost {cost}, at most {MAX_COST} (lists count `first` times their \
                 selection; ask for fewer items or fields)"
            ));
        }
    }
    Ok(())
}

type Field = async_graphql::parser::types::Field;

impl<'a> Walk<'a> {
    /// The fields a selection set selects, through fragments; counts aliases once per field occurrence.
    fn fields(
        &mut self,
        set: &'a SelectionSet,
        path: &mut Vec<&'a str>,
        out: &mut Vec<&'a Field>,
    ) -> Result<(), String> {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    if self.counting && field.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    out.push(&field.node);
                }
                Selection::InlineFragment(inline) => {
                    self.fields(&inline.node.selection_set.node, path, out)?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if path.contains(&name) {
                        return Err(format!("fragment `{name}` spreads itself"));
                    }
                    let Some(fragment) = self.fragments.get(name) else {
                        return Err(format!("unknown fragment `{name}`"));
                    };
                    path.push(name);
                    self.fields(&fragment.node.selection_set.node, path, out)?;
                    path.pop();
                }
            }
        }
        Ok(())
    }

    fn children(
        &mut self,
        field: &'a Field,
        path: &mut Vec<&'a str>,
    ) -> Result<Vec<&'a Field>, String> {
        let mut children = Vec::new();
        self.fields(&field.selection_set.node, path, &mut children)?;
        Ok(children)
    }

    fn depth(&mut self, field: &'a Field, path: &mut Vec<&'a str>) -> Result<usize, String> {
        let mut deepest = 0;
        for child in self.children(field, path)? {
            deepest = deepest.max(self.depth(child, path)?);
        }
        Ok(1 + deepest)
    }

    fn cost(&mut self, field: &'a Field, path: &mut Vec<&'a str>) -> Result<u64, String> {
        let name = field.name.node.as_str();
        if name == "__typename" {
            return Ok(0);
        }
        let own = DB_FIELDS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(1, |(_, w)| *w);
        let mut below = 0u64;
        for child in self.children(field, path)? {
            below = below.saturating_add(self.cost(child, path)?);
        }
        Ok(own.saturating_add(below.saturating_mul(self.items(field))))
    }

    /// How many items a field's selection is resolved for.
    fn items(&self, field: &Field) -> u64 {
        let first = field
            .arguments
            .iter()
            .find(|(n, _)| n.node == "first")
            .map(|(_, v)| {
                v.node
                    .clone()
                    .into_const_with(|var| {
                        Ok::<_, std::convert::Infallible>(
                            self.variables.get(&var).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .unwrap_or(Value::Null)
            });
        match first {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
            Some(_) => MAX_PAGE,
            None => UNPAGED_LISTS
                .iter()
                .find(|(n, _)| *n == field.name.node.as_str())
                .map_or(1, |(_, items)| *items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(query: &str) -> Option<String> {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        check(&doc, &Variables::default()).err()
    }

    #[test]
    fn the_dashboards_own_queries_pass() {
        for entry in
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend/queries")).unwrap()
        {
            let path = entry.unwrap().path();
            let query = std::fs::read_to_string(&path).unwrap();
            assert_eq!(refused(&query), None, "{}", path.display());
        }
    }

    #[test]
    fn the_standard_introspection_query_passes() {
        let query = include_str!("introspection.graphql");
        assert_eq!(refused(query), None);
        assert!(refused("{ a: __schema { types { name } } b: __schema { types { name } } c: __schema { types { name } } }").is_some());
    }

    #[test]
    fn costly_shapes_are_refused() {
        let one = "o0: offers(first: 100) { uptime(hours: 720) { spans { status } } }";
        assert!(
            refused(&format!("{{ {one} }}"))
                .unwrap()
                .contains("too expensive")
        );
        let aliased: String = (0..140)
            .map(|i| format!("o{i}: offers(first: 1) {{ id }} "))
            .collect();
        assert!(refused(&format!("{{ {aliased} }}")).is_some());
        let signups: String = (0..50)
            .map(|i| format!("s{i}: signUp(input: {{email: \"a{i}@x.test\", password: \"long enough pw\", role: OWNER}}) {{ user {{ id }} }} "))
            .collect();
        assert!(
            refused(&format!("mutation {{ {signups} }}"))
                .unwrap()
                .contains("one per request")
        );
        // Each alias counts once, however many passes walk it: 30 pass, 31 do not.
        let names = |n: usize| -> String { (0..n).map(|i| format!("n{i}: name ")).collect() };
        assert_eq!(
            refused(&format!("{{ offers(first: 1) {{ {} }} }}", names(30))),
            None
        );
        assert!(
            refused(&format!("{{ offers(first: 1) {{ {} }} }}", names(31)))
                .unwrap()
                .contains("31 aliases")
        );
        let deep = "{ rentals { device { owner { devices { nodes { owner { devices { nodes { owner { devices { nodes { id } } } } } } } } } } } }";
        assert!(refused(deep).unwrap().contains("nested too deep"));
        assert!(refused("query { ...A } fragment A on QueryRoot { ...A }").is_some());
    }
}
