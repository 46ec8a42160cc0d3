/** The start's warning for KG_ALLOW_ORIGIN=* on a service with no token and no API keys. */
import test from 'ava';
import { openOriginWarning } from '../../src/api/origin.js';

const open = { allowOrigin: '*', authToken: '', apiKeysFile: '' };

test('KG_ALLOW_ORIGIN=* with no token and no API keys is warned about, naming what to set', (t) => {
  const warning = openOriginWarning(open);
  t.regex(warning ?? '', /KG_ALLOW_ORIGIN=\*/);
  t.regex(warning ?? '', /KG_AUTH_TOKEN/);
  t.regex(warning ?? '', /run code/);
});

test('a token, API keys or a named origin is no warning', (t) => {
  t.is(openOriginWarning({ ...open, authToken: 'secret' }), undefined);
  t.is(openOriginWarning({ ...open, apiKeysFile: '/etc/keys.json' }), undefined);
  t.is(openOriginWarning({ ...open, allowOrigin: 'https://tutorial.example' }), undefined);
  t.is(openOriginWarning({ ...open, allowOrigin: '' }), undefined);
});
