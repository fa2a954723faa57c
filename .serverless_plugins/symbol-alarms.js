'use strict';

// One alarm per symbol (issue 9): "no trades of SYMBOL written for 15 minutes" needs an alarm on
// each symbol's TradesWritten metric, and CloudWatch alarms cannot SEARCH over a dimension.
//
// custom.perSymbolAlarms in serverless.yml gives the symbols (the `symbols` param, parsed as
// shards.js and tradelake/config.py parse it; order and duplicates do not matter) and the
// logical ids of the alarms to multiply. Each listed alarm is written once in resources/ (its
// period, threshold, actions) and replaced here by one copy per symbol:
//   - logical id  <Id without "Alarm"><symbol, letters and digits only>Alarm;
//   - AlarmName   <AlarmName>-<symbol>;  AlarmDescription  "<symbol>: <AlarmDescription>";
//   - Dimensions  + {Name: symbol, Value: <symbol>}.
// Local and offline; tests/infra/test_monitoring.py packages the stack with several symbols.

const { parseSymbols } = require('./shards');

class SymbolAlarms {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'after:aws:package:finalize:mergeCustomProviderResources': () => this.multiply(),
    };
  }

  multiply() {
    const { Error } = this.serverless.classes;
    const config = this.serverless.service.custom.perSymbolAlarms || {};
    const symbols = [...new Set(parseSymbols(config.symbols || ''))].sort();
    if (symbols.length === 0) throw new Error('perSymbolAlarms: the symbols param lists no symbol');
    const resources = this.serverless.service.provider.compiledCloudFormationTemplate.Resources;
    for (const id of config.alarms || []) {
      const alarm = resources[id];
      if (!alarm || alarm.Type !== 'AWS::CloudWatch::Alarm') {
        throw new Error(`perSymbolAlarms: ${id} is not an alarm of the template`);
      }
      delete resources[id];
      const taken = new Set(Object.keys(resources).map((k) => k.toLowerCase()));
      for (const symbol of symbols) {
        const logicalId = `${id.replace(/Alarm$/, '')}${symbol.replace(/[^A-Za-z0-9]/g, '')}Alarm`;
        if (taken.has(logicalId.toLowerCase())) {
          throw new Error(`perSymbolAlarms: ${symbol} makes the logical id ${logicalId} twice`);
        }
        taken.add(logicalId.toLowerCase());
        const copy = JSON.parse(JSON.stringify(alarm));
        const props = copy.Properties;
        props.AlarmName = `${props.AlarmName}-${symbol}`;
        props.AlarmDescription = `${symbol}: ${props.AlarmDescription}`;
        props.Dimensions = [...(props.Dimensions || []), { Name: 'symbol', Value: symbol }];
        resources[logicalId] = copy;
      }
    }
  }
}

module.exports = SymbolAlarms;
