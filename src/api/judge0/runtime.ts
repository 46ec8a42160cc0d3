/**
 * What Judge0's API needs beside its routes, made once by the composition root: the submission queue
 * (started before the service listens, so that submissions left by a restart run again) and the callbacks
 * it fires. A finished submission with a callback_url gets a PUT of what Judge0 sends: the default fields,
 * Base64 encoded (its isolate_job.rb call_callback).
 */
import type { Config } from '../../config/index.js';
import { CallbackSender, type CallbackTargets } from '../../judge/callbacks.js';
import type { JudgeEngine } from '../../judge/model.js';
import { SubmissionQueue, type JobRecord } from '../../judge/submission-queue.js';
import type { Logger } from '../../logger.js';
import type { Store } from '../../store/store.js';
import { LanguageCatalog } from './languages.js';
import { DEFAULT_FIELDS, fieldsFor, renderSubmission } from './render.js';
import type { Judge0Meta } from './submission.js';

export interface Judge0Runtime {
  submissions: SubmissionQueue<Judge0Meta>;
  callbackTargets: CallbackTargets;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface Judge0RuntimeDeps {
  config: Config;
  store: Store;
  engine: JudgeEngine;
  log: Logger;
  clock?: () => number;
}

export function createJudge0Runtime(deps: Judge0RuntimeDeps): Judge0Runtime {
  const { config, log } = deps;
  const submissions = new SubmissionQueue<Judge0Meta>({ config, store: deps.store, engine: deps.engine, log, clock: deps.clock });
  const callbacks = new CallbackSender({ config, log });
  const languages = new LanguageCatalog(deps.engine);
  const pending = new PendingCallbacks(deps.store, config.instance, log);
  /** Sends a finished record's callback; its pending entry goes once it is delivered or given up. */
  const fire = (record: JobRecord<Judge0Meta>, url: string, triesDone: number) => {
    let failedTries = triesDone;
    void languages
      .list()
      .catch(() => [])
      .then((langs) => {
        const body = JSON.stringify(renderSubmission(record, { fields: fieldsFor(record, DEFAULT_FIELDS, false), base64: true, statusIds: config.judge0StatusIds, languages: langs }));
        return callbacks.send(url, body, { token: record.token }, config.judge0CallbackMaxTries - triesDone, () => {
          failedTries += 1;
          pending.triedOnce(record.token, failedTries);
        });
      })
      .then((delivered) => {
        // Cut short by a stop: the entry stays, and the next start resumes it.
        if (!delivered && callbacks.isClosed) return;
        if (!delivered) log.warn('Callback not delivered', { token: record.token });
        pending.done(record.token);
      });
  };
  submissions.onFinished(({ record }) => {
    const url = record.meta.callback_url;
    if (!url) return;
    // Written before the first try: a service stopped before the callback got through sends it after its next start.
    void pending.add(record.token, url).then(() => fire(record, url, 0));
  });
  /** Callbacks of finished submissions that had not got through when the last process stopped. */
  const resume = async () => {
    for (const entry of await pending.list()) {
      const record = await submissions.get(entry.token);
      // Gone (expired, deleted), or not finished (the queue runs it again, and its finish sends it anew).
      if (!record || record.state !== 'finished') {
        if (!record) pending.done(entry.token);
        continue;
      }
      if (entry.failedTries >= config.judge0CallbackMaxTries) {
        pending.done(entry.token);
        continue;
      }
      log.info('Callback resumed after a restart', { token: entry.token, failedTries: entry.failedTries });
      fire(record, entry.url, entry.failedTries);
    }
  };
  return {
    submissions,
    callbackTargets: callbacks.targets,
    async start() {
      await submissions.start();
      await resume();
    },
    async stop() {
      await submissions.stop();
      callbacks.close();
    },
  };
}

/** What the store keeps of a callback not yet delivered (namespace `pending-callbacks`, id: the token). */
interface PendingCallback {
  token: string;
  instance: string;
  url: string;
  /** Tries that failed so far, across restarts: the bound of POLYKERNEL_JUDGE0_CALLBACKS_MAX_TRIES holds over them. */
  failedTries: number;
}

/**
 * The callbacks that were due and not yet delivered, persisted beside the submissions. The body is not
 * kept: it is rendered again from the finished record (which the store keeps for its TTL), so an entry
 * is a few dozen bytes. A store out of reach only costs the resumption: the callback is still sent now.
 */
class PendingCallbacks {
  constructor(
    private readonly store: Store,
    private readonly instance: string,
    private readonly log: Logger,
  ) {}

  async add(token: string, url: string): Promise<void> {
    await this.store
      .put<PendingCallback>(NS, token, { token, instance: this.instance, url, failedTries: 0 })
      .catch((error: Error) => this.log.warn('Pending callback not stored: it is not resumed if the service stops first', { token, error: error.message }));
  }

  triedOnce(token: string, failedTries: number): void {
    void this.store.update<PendingCallback>(NS, token, { failedTries }).catch(() => undefined);
  }

  done(token: string): void {
    void this.store.delete(NS, token).catch(() => undefined);
  }

  async list(): Promise<PendingCallback[]> {
    return (await this.store.list<PendingCallback>(NS)).filter((entry) => entry.instance === this.instance);
  }
}

const NS = 'pending-callbacks';
