using CommandLine;
using NativeVlm.Cli;
using NativeVlm.Interop;

// Verbs of the console host. Errors exit 2 with a one-line reason; --help exits 0.
var parser = new Parser(settings =>
{
    settings.HelpWriter = Console.Out;
    settings.CaseInsensitiveEnumValues = true;
});

// The Type[] overload parses verbs even while there is only one.
return parser.ParseArguments(args, typeof(DemoOptions)).MapResult(
    (DemoOptions options) => Run(() => DemoCommand.Run(options)),
    errors => errors.All(e => e.Tag is ErrorType.HelpRequestedError or ErrorType.VersionRequestedError or ErrorType.HelpVerbRequestedError) ? 0 : 2);

static int Run(Func<int> command)
{
    try
    {
        return command();
    }
    catch (Exception e) when (e is NvlmException or ArgumentException or DllNotFoundException or IOException)
    {
        Console.Error.WriteLine($"nativevlm: {e.Message}");
        return 2;
    }
}
