/** The moto server lives in scripts/ so the compiled benchmarks can start one too. */
export { motoAwsClients, startMoto, type MotoServer } from '../../scripts/moto';
