'use strict';

// Remove, then deploy again (issue 8, item 4; README "Remove and redeploy").
//
// The data bucket has DeletionPolicy Retain, so after `osls remove` its name is still taken and
// a new deploy of the stage would fail creating it. With the param `existingDataBucket` set to
// the retained (or any existing) bucket's name, this plugin makes the stack ADOPT it:
//
//   - ${dataBucket:name} (custom.dataBucket) is that name instead of the stack's own
//     tradelake-<stage>-<account>-<region>: Glue table locations, the Athena results location,
//     the S3 → Lambda permission and every ARN built from the name follow;
//   - the AWS::S3::Bucket resource is left out of the packaged template, and every reference to
//     it (Ref, Fn::GetAtt Arn, ${DataBucket.Arn} in Fn::Sub, DependsOn) is rewritten to the name;
//     the bucket policy stays (it was deleted with the old stack) and is put on the adopted bucket;
//   - the bucket's notifications (its NotificationConfiguration in resources/storage.yml, read
//     here, so the filters have one source) become osls `existing: true` S3 events, i.e. osls's
//     Custom::S3 resource that merges them into the existing bucket's configuration.
//
// Done at package time, not with a CloudFormation Condition: a Condition would need an Fn::If
// at each of the ~20 places that name the bucket, and a template with no bucket at all is what a
// reviewer can check. The param empty (the default): nothing changes. Local and offline.

const BUCKET_ID = 'DataBucket';

class ExistingDataBucket {
  constructor(serverless) {
    this.serverless = serverless;
    this.configurationVariablesSources = {
      dataBucket: {
        resolve: async ({ address, resolveVariable }) => {
          if (address !== 'name') {
            throw new serverless.classes.Error(`\${dataBucket:${address}}: only \${dataBucket:name}`);
          }
          const existing = String(await resolveVariable('param:existingDataBucket')).trim();
          if (existing === '') return { value: await resolveVariable('self:custom.ownDataBucket') };
          if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(existing)) {
            throw new serverless.classes.Error(
              `existingDataBucket ${JSON.stringify(existing)} is not an S3 bucket name`
            );
          }
          return { value: existing };
        },
      },
    };
    this.hooks = {
      'before:package:compileEvents': () => this.addExistingS3Events(),
      'after:aws:package:finalize:mergeCustomProviderResources': () => this.dropBucket(),
    };
  }

  existing() {
    const { custom } = this.serverless.service;
    return custom.dataBucket !== custom.ownDataBucket ? custom.dataBucket : null;
  }

  bucketResource() {
    const { resources } = this.serverless.service;
    const parts = Array.isArray(resources) ? resources : [resources];
    for (const part of parts) {
      if (part && part.Resources && part.Resources[BUCKET_ID]) return part.Resources[BUCKET_ID];
    }
    throw new this.serverless.classes.Error(`existingDataBucket: no ${BUCKET_ID} resource`);
  }

  addExistingS3Events() {
    const bucket = this.existing();
    if (!bucket) return;
    const { service } = this.serverless;
    const naming = this.serverless.getProvider('aws').naming;
    const notifications = this.bucketResource().Properties.NotificationConfiguration || {};
    const others = Object.keys(notifications).filter((k) => k !== 'LambdaConfigurations');
    if (others.length) {
      throw new this.serverless.classes.Error(
        `existingDataBucket: cannot carry ${others.join(', ')} over to an existing bucket`
      );
    }
    for (const config of notifications.LambdaConfigurations || []) {
      const target = (config.Function || {})['Fn::GetAtt'];
      const name = service
        .getAllFunctions()
        .find((fn) => target && naming.getLambdaLogicalId(fn) === target[0]);
      if (!name) {
        throw new this.serverless.classes.Error(
          `existingDataBucket: the notification to ${JSON.stringify(config.Function)} is not ` +
            'to a function of this service'
        );
      }
      const rules = ((config.Filter || {}).S3Key || {}).Rules || [];
      const fn = service.getFunction(name);
      fn.events = fn.events || [];
      fn.events.push({
        s3: {
          bucket,
          existing: true,
          event: config.Event,
          rules: rules.map((r) => ({ [r.Name.toLowerCase()]: r.Value })),
        },
      });
    }
  }

  dropBucket() {
    const bucket = this.existing();
    if (!bucket) return;
    const template = this.serverless.service.provider.compiledCloudFormationTemplate;
    delete template.Resources[BUCKET_ID];
    const arn = `arn:\${AWS::Partition}:s3:::${bucket}`;
    const rewrite = (node) => {
      if (Array.isArray(node)) return node.map(rewrite);
      if (typeof node === 'string') {
        return node.split(`\${${BUCKET_ID}.Arn}`).join(arn).split(`\${${BUCKET_ID}}`).join(bucket);
      }
      if (!node || typeof node !== 'object') return node;
      if (node.Ref === BUCKET_ID) return bucket;
      const getAtt = node['Fn::GetAtt'];
      if (Array.isArray(getAtt) && getAtt[0] === BUCKET_ID) {
        if (getAtt[1] !== 'Arn') {
          throw new this.serverless.classes.Error(
            `existingDataBucket: cannot rewrite Fn::GetAtt ${getAtt.join('.')}`
          );
        }
        return { 'Fn::Sub': arn };
      }
      const out = {};
      for (const [key, value] of Object.entries(node)) {
        if (value === undefined) continue;
        if (key === 'DependsOn') {
          const deps = (Array.isArray(value) ? value : [value]).filter((d) => d !== BUCKET_ID);
          if (deps.length) out[key] = deps;
        } else if (key === 'Fn::Sub' && typeof value === 'string' && !value.includes('${')) {
          return value; // the name alone: no variable left to substitute
        } else {
          out[key] = rewrite(value);
        }
      }
      return out;
    };
    for (const section of ['Resources', 'Outputs']) {
      if (template[section]) template[section] = rewrite(template[section]);
    }
    // osls's Custom::S3 lists in DependsOn what its GetAtts already imply (cfn-lint W3005).
    for (const resource of Object.values(template.Resources)) {
      if (!resource.DependsOn) continue;
      const body = JSON.stringify(resource.Properties || {});
      resource.DependsOn = resource.DependsOn.filter(
        (id) => !body.includes(`{"Fn::GetAtt":["${id}",`) && !body.includes(`{"Ref":"${id}"}`)
      );
      if (!resource.DependsOn.length) delete resource.DependsOn;
    }
  }
}

module.exports = ExistingDataBucket;
