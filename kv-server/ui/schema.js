// The metadata forms' check against the JSON Schema files of `schemas/json`
// (served by the node under /ui/schemas/): the keywords those files use.

/** A schema's definition, with a `$ref` into `$defs` followed. */
export function resolve(root, schema) {
  if (!schema?.$ref) return schema ?? {};
  return root.$defs?.[schema.$ref.replace('#/$defs/', '')] ?? {};
}

/** The values a string property may take, from `enum` or `oneOf` of consts. */
export function choices(schema) {
  if (Array.isArray(schema.enum)) return schema.enum;
  if (Array.isArray(schema.oneOf) && schema.oneOf.every((option) => 'const' in option)) {
    return schema.oneOf.map((option) => option.const);
  }
  return null;
}

/**
 * The problems of `value` against `schema`, for the keywords the
 * metadata schemas use (type, bounds, lengths, pattern, enum, required,
 * properties); the node checks again and has the last word.
 */
export function validate(root, schema, value, path, problems = []) {
  const rule = resolve(root, schema);
  const at = path || 'value';
  const allowed = choices(rule);
  if (allowed && !allowed.includes(value)) {
    problems.push({ path, message: `${at} must be one of ${allowed.join(', ')}` });
  }
  const type = rule.type ?? (allowed ? 'string' : undefined);
  if (type === 'integer' && !Number.isInteger(value)) {
    problems.push({ path, message: `${at} must be a whole number` });
  } else if (type === 'boolean' && typeof value !== 'boolean') {
    problems.push({ path, message: `${at} must be true or false` });
  } else if (type === 'string' && typeof value !== 'string') {
    problems.push({ path, message: `${at} must be text` });
  } else if (type === 'object' && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    problems.push({ path, message: `${at} must be a JSON object` });
  } else if (type === 'array' && !Array.isArray(value)) {
    problems.push({ path, message: `${at} must be a JSON array` });
  } else if (type === 'null' && value !== null) {
    problems.push({ path, message: `${at} must be null` });
  }
  if (Array.isArray(rule.anyOf) && !rule.anyOf.some((option) => validate(root, option, value, path).length === 0)) {
    problems.push({ path, message: `${at} has none of the allowed forms` });
  }
  if (Array.isArray(value)) {
    if (rule.minItems !== undefined && value.length < rule.minItems) problems.push({ path, message: `${at} needs at least ${rule.minItems} item(s)` });
    if (rule.items) value.forEach((item, position) => validate(root, rule.items, item, `${at}[${position}]`, problems));
  }
  if (typeof value === 'number') {
    if (rule.minimum !== undefined && value < rule.minimum) problems.push({ path, message: `${at} must be at least ${rule.minimum}, got ${value}` });
    if (rule.maximum !== undefined && value > rule.maximum) problems.push({ path, message: `${at} must be at most ${rule.maximum}, got ${value}` });
  }
  if (typeof value === 'string') {
    if (rule.minLength !== undefined && value.length < rule.minLength) problems.push({ path, message: `${at} must not be empty` });
    if (rule.maxLength !== undefined && value.length > rule.maxLength) problems.push({ path, message: `${at} must be at most ${rule.maxLength} characters` });
    if (rule.pattern && !new RegExp(rule.pattern, 'u').test(value)) problems.push({ path, message: `${at} must match ${rule.pattern}` });
  }
  if (type === 'object' && typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const name of rule.required ?? []) {
      if (!(name in value)) problems.push({ path: path ? `${path}.${name}` : name, message: `${name} is required` });
    }
    for (const [name, item] of Object.entries(value)) {
      const child = rule.properties?.[name]
        ?? (typeof rule.additionalProperties === 'object' ? rule.additionalProperties : null);
      if (child) validate(root, child, item, path ? `${path}.${name}` : name, problems);
    }
  }
  return problems;
}
