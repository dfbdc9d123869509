import type Docker from 'dockerode';
import type { RuntimeSpec } from './runtimes.js';

export const RUNTIME_LABEL = 'io.cordon.runtime';
export const LANGUAGE_VERSION_LABEL = 'io.cordon.language-version';
export const RECIPE_HASH_LABEL = 'io.cordon.recipe-hash';

/** The image a runtime runs in, or why it cannot run. */
export type RuntimeImage =
  | { readonly available: true; readonly tag: string; readonly id: string }
  | { readonly available: false; readonly reason: string };

/**
 * Finds a runtime's image by the builder's `latest` tag and accepts it only
 * when its labels name this runtime and the catalog's exact language version,
 * so an image built from another recipe is refused rather than guessed at.
 */
export async function resolveRuntimeImage(
  docker: Docker,
  runtime: RuntimeSpec,
): Promise<RuntimeImage> {
  const latest = `${runtime.image}:latest`;
  let info: Docker.ImageInspectInfo;
  try {
    info = await docker.getImage(latest).inspect();
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) {
      return {
        available: false,
        reason: `image ${latest} is not built; run sandbox-images/build ${runtime.id}`,
      };
    }
    throw error;
  }

  const labels: Record<string, string | undefined> = info.Config.Labels;
  if (labels[RUNTIME_LABEL] !== runtime.id) {
    return {
      available: false,
      reason: `image ${latest} is labelled for runtime "${labels[RUNTIME_LABEL] ?? ''}", not "${runtime.id}"`,
    };
  }
  if (labels[LANGUAGE_VERSION_LABEL] !== runtime.languageVersion) {
    return {
      available: false,
      reason: `image ${latest} has ${runtime.language} ${labels[LANGUAGE_VERSION_LABEL] ?? 'of no version'}, but the catalog says ${runtime.languageVersion}; rebuild it with sandbox-images/build ${runtime.id}`,
    };
  }
  const recipeHash = labels[RECIPE_HASH_LABEL];
  if (recipeHash === undefined || !/^[0-9a-f]{12}$/.test(recipeHash)) {
    return {
      available: false,
      reason: `image ${latest} has no ${RECIPE_HASH_LABEL} label; rebuild it`,
    };
  }
  return { available: true, tag: `${runtime.image}:${recipeHash}`, id: info.Id };
}
