/**
 * The optional SageMaker Model Registry mirror of the LoRA registry. Idempotent without relying on
 * SageMaker's ClientToken alone: a version whose `Sha256` property matches is adopted, never
 * created twice, and a group that already exists is used as it is.
 */
import {
  CreateModelPackageCommand,
  CreateModelPackageGroupCommand,
  DescribeModelPackageCommand,
  paginateListModelPackageGroups,
  paginateListModelPackages,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { modelPackageVersionRequest, SHA256_PROPERTY } from '../../lib/lora/model-package';
import type { RegistryRecord } from '../../lib/lora/registry';

export interface ModelRegistry {
  /** Registers one LoRA file as a version of its name's group; returns the version's ARN. */
  registerVersion(baseName: string, record: Omit<RegistryRecord, 'modelPackageArn'>): Promise<string>;
}

export class SageMakerModelRegistry implements ModelRegistry {
  constructor(private readonly options: { client: SageMakerClient; groupPrefix: string }) {}

  async registerVersion(baseName: string, record: Omit<RegistryRecord, 'modelPackageArn'>): Promise<string> {
    const request = modelPackageVersionRequest(this.options.groupPrefix, baseName, record);
    await this.ensureGroup(request.groupName, request.groupDescription);
    const existing = await this.versionWithSha256(request.groupName, record.sha256);
    if (existing) return existing;
    const created = await this.options.client.send(
      new CreateModelPackageCommand({
        ModelPackageGroupName: request.groupName,
        ModelPackageDescription: request.description,
        ModelApprovalStatus: 'PendingManualApproval',
        CustomerMetadataProperties: request.properties,
        ClientToken: request.clientToken,
      }),
    );
    if (!created.ModelPackageArn) throw new Error(`CreateModelPackage in group ${request.groupName} returned no ModelPackageArn`);
    return created.ModelPackageArn;
  }

  private async ensureGroup(groupName: string, description: string): Promise<void> {
    if (await this.groupExists(groupName)) return;
    try {
      await this.options.client.send(
        new CreateModelPackageGroupCommand({ ModelPackageGroupName: groupName, ModelPackageGroupDescription: description }),
      );
    } catch (err) {
      // Another worker may have created it in between; anything else is a real failure.
      if (!(await this.groupExists(groupName))) throw err;
    }
  }

  private async groupExists(groupName: string): Promise<boolean> {
    for await (const page of paginateListModelPackageGroups({ client: this.options.client }, { NameContains: groupName })) {
      if (page.ModelPackageGroupSummaryList?.some((group) => group.ModelPackageGroupName === groupName)) return true;
    }
    return false;
  }

  private async versionWithSha256(groupName: string, sha256: string): Promise<string | undefined> {
    for await (const page of paginateListModelPackages({ client: this.options.client }, { ModelPackageGroupName: groupName })) {
      for (const summary of page.ModelPackageSummaryList ?? []) {
        if (!summary.ModelPackageArn) continue;
        const described = await this.options.client.send(new DescribeModelPackageCommand({ ModelPackageName: summary.ModelPackageArn }));
        if (described.CustomerMetadataProperties?.[SHA256_PROPERTY] === sha256) return summary.ModelPackageArn;
      }
    }
    return undefined;
  }
}
