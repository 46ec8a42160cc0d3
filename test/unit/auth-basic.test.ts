/** The token a request presents, Basic included: the form of clients that take only a server URL (piston-client). */
import test from 'ava';
import { presentedToken } from '../../src/auth/tenancy.js';

const url = new URL('http://localhost/api/v2/runtimes');
const basic = (userPass: string) => ({ authorization: `Basic ${Buffer.from(userPass).toString('base64')}` });

test('token and Bearer headers, and ?token=, as before', (t) => {
  t.is(presentedToken({ authorization: 'token abc' }, url), 'abc');
  t.is(presentedToken({ authorization: 'Bearer abc' }, url), 'abc');
  t.is(presentedToken({}, new URL('http://localhost/x?token=q')), 'q');
  t.is(presentedToken({}, url), undefined);
});

test('Basic presents its password; the user name is not looked at', (t) => {
  t.is(presentedToken(basic('piston:s3cret'), url), 's3cret');
  t.is(presentedToken(basic(':s3cret'), url), 's3cret');
  t.is(presentedToken(basic('a:b:c'), url), 'b:c');
});

test('Basic without a password, or not base64, presents nothing', (t) => {
  t.is(presentedToken(basic('piston:'), url), undefined);
  t.is(presentedToken(basic('nopassword'), url), undefined);
  t.is(presentedToken({ authorization: 'Basic %%%' }, url), undefined);
});
