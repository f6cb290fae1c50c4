// The independent evaluator's decision for each case (tests/differential): reads a JSON
// array of cases on stdin, writes a JSON array of {id, decision} or {id, error} on stdout.
// A dev-only test tool: @cloud-copilot/iam-simulate (AGPL-3.0-or-later), run here, never
// shipped or served (README, "The world's IAM, judged from outside").
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'

const DECISIONS = {
  Allowed: 'allow',
  ExplicitlyDenied: 'explicit deny',
  ImplicitlyDenied: 'implicit deny',
}

function simulation(c) {
  return {
    request: {
      principal: c.principal,
      action: c.action,
      resource: { resource: c.resource, accountId: c.resource_account },
      contextVariables: c.context,
    },
    identityPolicies: c.identity.map((policy, i) => ({ name: `identity-${i}`, policy })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    ...(c.resource_policy ? { resourcePolicy: c.resource_policy } : {}),
    ...(c.boundary ? { permissionBoundaryPolicies: [{ name: 'boundary', policy: c.boundary }] } : {}),
    ...(c.session ? { sessionPolicy: c.session } : {}),
  }
}

async function decide(c) {
  // Condition cases go unvalidated, so a context key is judged as written (the validating
  // path drops keys its data does not list for the action, and cuts arrays of
  // single-valued keys to their first value); policy-type cases take the validating path,
  // the only one that reads session policies.
  if (c.unvalidated) {
    return DECISIONS[runUnsafeSimulation(simulation(c), {})]
  }
  const result = await runSimulation(simulation(c), { simulationMode: 'Strict' })
  if (result.resultType === 'error') {
    throw new Error(JSON.stringify(result.errors))
  }
  return DECISIONS[result.overallResult]
}

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const cases = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const answers = []
for (const c of cases) {
  try {
    answers.push({ id: c.id, decision: await decide(c) })
  } catch (err) {
    answers.push({ id: c.id, error: String(err.message ?? err).slice(0, 400) })
  }
}
process.stdout.write(JSON.stringify(answers))
