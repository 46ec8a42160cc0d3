/**
 * What Judge0's API needs beside its routes, made once by the composition root: the submission queue
 * (started before the service listens, so that submissions left by a restart run again) and the callbacks
 * it fires. A finished submission with a callback_url gets a PUT of what Judge0 sends: the default fields,
 * Base64 encoded (its isolate_job.rb call_callback).
 */
import type { Config } from '../../config/index.js';
import { CallbackSender, type CallbackTargets } from '../../judge/callbacks.js';
import type { JudgeEngine } from '../../judge/model.js';
import { SubmissionQueue } from '../../judge/submission-queue.js';
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
  submissions.onFinished(({ record }) => {
    const url = record.meta.callback_url;
    if (!url) return;
    void languages
      .list()
      .catch(() => [])
      .then((langs) => {
        const body = JSON.stringify(renderSubmission(record, { fields: fieldsFor(record, DEFAULT_FIELDS, false), base64: true, statusIds: config.judge0StatusIds, languages: langs }));
        return callbacks.send(url, body, { token: record.token });
      })
      .then((delivered) => {
        if (!delivered) log.warn('Callback not delivered', { token: record.token });
      });
  });
  return {
    submissions,
    callbackTargets: callbacks.targets,
    start: () => submissions.start(),
    async stop() {
      await submissions.stop();
      callbacks.close();
    },
  };
}
