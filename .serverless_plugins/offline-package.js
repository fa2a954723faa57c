'use strict';

// Offline `serverless package` for tradelake (DEVELOPERS.md, "Packaging offline").
//
// The layer step of `package` asks CloudFormation for the last deployed stack, to reuse a layer
// whose hash did not change (AwsCompileLayers.compareWithLastLayer). Everything else in
// `package` is local. With SLS_OFFLINE_PACKAGE=1 this plugin
//   - turns that comparison into a no-op (every layer is packaged as new, which is what a
//     first deploy does anyway), and
//   - makes any other attempt to build an AWS client fail at once with a clear message, so that
//     "offline" is a guarantee and not a hope: no credentials are looked up, no request is sent.
// Without the variable it does nothing. With it, every command but `package` and `print` is
// refused: a deploy must talk to AWS.

const ENV = 'SLS_OFFLINE_PACKAGE';
const OFFLINE_COMMANDS = new Set(['package', 'print']);

class OfflinePackage {
  constructor(serverless, options) {
    this.serverless = serverless;
    this.options = options;
    this.enabled = ['1', 'true', 'yes'].includes(String(process.env[ENV] || '').toLowerCase());
    this.hooks = {};
    // In the constructor, not in a hook: variables such as ${aws:accountId} are resolved after
    // the plugins are loaded but before the first hook runs.
    if (this.enabled) this.goOffline();
  }

  goOffline() {
    const command = this.serverless.processedInput.commands.join(' ');
    if (!OFFLINE_COMMANDS.has(command)) {
      throw new this.serverless.classes.Error(
        `${ENV}=1 is only for \`serverless package\` (or \`print\`), not \`${command}\`: ` +
          'unset it.'
      );
    }
    const provider = this.serverless.getProvider('aws');
    provider.getAwsSdkV3Config = async () => {
      throw new this.serverless.classes.Error(
        `${ENV}=1: packaging tried to call AWS; offline packaging must not. ` +
          'A variable such as ${aws:accountId} or ${ssm:...} needs AWS: use a CloudFormation ' +
          'pseudo parameter (Fn::Sub ${AWS::AccountId}) or a param instead.'
      );
    };
    let patched = 0;
    for (const plugin of this.serverless.pluginManager.plugins) {
      if (plugin.constructor.name === 'AwsCompileLayers') {
        plugin.compareWithLastLayer = async () => {};
        patched += 1;
      }
    }
    if (patched !== 1) {
      throw new this.serverless.classes.Error(
        `${ENV}=1: found ${patched} AwsCompileLayers plugins, expected 1; ` +
          'has the osls version changed? See DEVELOPERS.md.'
      );
    }
  }
}

module.exports = OfflinePackage;
