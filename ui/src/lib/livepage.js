// The visible page of keys kept current from watch events. Pure: a page and a change in, the
// page out. A change is applied only when it is newer than what the page shows, so events that
// the listing already reflects (the listing was read after them) change nothing.

/** Key order as the store sorts (UTF-8 bytes, which is code point order; JS `<` is UTF-16). */
export function compareKeys(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

/** Whether `key` belongs on the page that starts after `after` and (when `next` is set) ends at `next`. */
export function onPage(key, after, next) {
  return (after == null || compareKeys(key, after) > 0) && (next == null || compareKeys(key, next) <= 0);
}

/**
 * The page `{items, next}` (listed after the cursor `after`, at most `limit` items) with
 * `change` ({kind: "put"|"delete", key, value, revision}) applied; the same object when the
 * change does not touch it.
 */
export function applyChange(page, change, after, limit) {
  const { items, next } = page;
  if (!onPage(change.key, after, next)) return page;
  const at = items.findIndex((item) => item.key === change.key);
  const current = at >= 0 ? items[at] : null;
  if (current && current.revision >= change.revision) return page;
  if (change.kind === "delete") {
    if (!current) return page;
    return { items: items.filter((_, i) => i !== at), next };
  }
  const item = { key: change.key, value: change.value, revision: change.revision };
  if (current) return { items: items.map((old, i) => (i === at ? item : old)), next };
  const where = items.findIndex((old) => compareKeys(old.key, change.key) > 0);
  const grown = where < 0 ? [...items, item] : [...items.slice(0, where), item, ...items.slice(where)];
  if (grown.length <= limit) return { items: grown, next };
  // one too many: the last key moves to the next page, which now starts after the new last one
  const kept = grown.slice(0, limit);
  return { items: kept, next: kept[kept.length - 1].key };
}
