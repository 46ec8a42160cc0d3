/**
 * Declared package sets: an image's org.polykernel.packages label becomes its kernelspec's
 * metadata.polykernel.packages; a label that is not a list of {name, version} is left out, never a
 * reason to drop the kernelspec.
 */
import test from 'ava';
import { declaredPackages, KernelSpecRegistry } from '../../src/kernels/kernel-specs.js';
import type { ContainerRuntime, KernelImage } from '../../src/runtime/runtime.js';

const KERNELSPEC = JSON.stringify({
  name: 'python3-data',
  spec: { language: 'python', display_name: 'Python 3 (data science)', argv: ['python3'], env: {}, metadata: { debugger: false }, interrupt_mode: 'signal' },
});

function registryOf(images: KernelImage[]): KernelSpecRegistry {
  const runtime = { listKernelImages: async () => images } as unknown as ContainerRuntime;
  return new KernelSpecRegistry(runtime, 'polykernel/');
}

test('a packages label is listed under metadata.polykernel.packages, beside the image\'s own metadata', async (t) => {
  const packages = [{ name: 'python', version: '3.11.2' }, { name: 'numpy', version: '1.24.2', import: ['numpy'] }];
  const registry = registryOf([
    { image: 'polykernel/python-data:latest', labels: { 'org.polykernel.kernelspec': KERNELSPEC, 'org.polykernel.packages': JSON.stringify(packages) } },
  ]);
  const entry = await registry.resolve('python3-data');
  t.deepEqual(entry?.spec.metadata, { debugger: false, polykernel: { packages } });
});

test('an image without the label, or with one that is not a list of {name, version}, keeps its kernelspec without packages', async (t) => {
  for (const label of [undefined, '', 'not json', '{"name":"x"}', '[{"name":"x"}]', '[{"name":1,"version":"2"}]', '[null]']) {
    const labels: Record<string, string> = { 'org.polykernel.kernelspec': KERNELSPEC };
    if (label !== undefined) labels['org.polykernel.packages'] = label;
    const entry = await registryOf([{ image: 'polykernel/python-data:latest', labels }]).resolve('python3-data');
    t.deepEqual(entry?.spec.metadata, { debugger: false }, `label ${label}`);
  }
});

test('import lists keep only strings; other fields are dropped', (t) => {
  t.deepEqual(declaredPackages('[{"name":"a","version":"1","import":["a",2,"b"],"extra":true}]'), [{ name: 'a', version: '1', import: ['a', 'b'] }]);
});
