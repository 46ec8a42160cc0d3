/** POST /api/executions bodies into an execution request (issue #5): form or JSON, parameters as strings. */
import test from 'ava';
import { parseFields, toExecutionRequest } from '../../src/api/executions/submission.js';

test('a URL-encoded form: nbexec fields are options, every other field a string parameter', (t) => {
  const fields = parseFields('notebook=a%2Fb.ipynb&output_path=o.ipynb&overwrite=true&cell_timeout=5&jupyter_kernel=py&x=1&y=hello+world', 'application/x-www-form-urlencoded; charset=utf-8');
  t.deepEqual(toExecutionRequest(fields), {
    notebook: 'a/b.ipynb',
    outputPath: 'o.ipynb',
    overwrite: true,
    jupyterKernel: 'py',
    cellTimeoutS: 5,
    params: { x: '1', y: 'hello world' },
  });
});

test('a JSON body works the same; numbers and booleans become strings', (t) => {
  const request = toExecutionRequest(parseFields('{"notebook": "n.ipynb", "n": 3, "flag": false, "overwrite": false}', 'application/json'));
  t.deepEqual(request.params, { n: '3', flag: 'false' });
  t.false(request.overwrite);
  t.is(request.cellTimeoutS, undefined);
  t.throws(() => parseFields('{"notebook": "n", "p": {"a": 1}}', 'application/json'), { message: /p must be a string/ });
  t.throws(() => parseFields('{"notebook"', 'application/json'), { message: /not valid JSON/ });
  t.throws(() => parseFields('x', 'application/xml'), { message: /x-www-form-urlencoded or application\/json/ });
});

test('bad values are refused with the field name', (t) => {
  t.throws(() => toExecutionRequest({}), { message: 'notebook is required' });
  t.throws(() => toExecutionRequest({ notebook: 'n', cell_timeout: '0' }), { message: /cell_timeout must be a whole number/ });
  t.throws(() => toExecutionRequest({ notebook: 'n', cell_timeout: '1.5' }), { message: /cell_timeout/ });
  t.throws(() => toExecutionRequest({ notebook: 'n', overwrite: 'maybe' }), { message: /overwrite must be true or false/ });
});
