export { loraTrainingWorkflow } from './loraTraining';
