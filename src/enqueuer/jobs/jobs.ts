// Async jobs: placeholder until the jobs module lands.
export interface Jobs {
  readonly enabled: boolean
}
